#include "engine/model/weight_source.h"

#include <algorithm>
#include <cmath>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/bf16.h"
#include "engine/common/splitmix.h"
#include "engine/common/status_macros.h"
#include "engine/model/weight_loader.h"
#include "kernels/cpu/quant.h"

namespace moegraph {
namespace {

std::string ShapeStr(const std::vector<int64_t>& s) { return "[" + absl::StrJoin(s, ", ") + "]"; }

class Checkpoint final : public WeightSource {
 public:
  Checkpoint(const WeightStore& ws, const ModelConfig& c) : ws_(ws), c_(c) {}

  absl::StatusOr<Tensor> Vector(const TensorSpec& spec) override {
    for (const std::string& name : spec.names) {
      if (!ws_.Has(name)) continue;
      ASSIGN_OR_RETURN(Tensor t, ws_.Get(name, spec.shape));
      if (spec.field == TensorField::kTid2eid) RETURN_IF_ERROR(CheckRoutingTable(name, t));
      return t;
    }
    return absl::NotFoundError(absl::StrCat("checkpoint lacks ", spec.names.front(), " (expected ",
                                            ShapeStr(spec.shape), ")"));
  }
  absl::StatusOr<HostWeight> Matrix(const TensorSpec& spec) override {
    return ReadMatrix(ws_, spec.names, spec.shape[0], spec.shape[1], c_.quant);
  }

 private:
  // A hash-routed layer's token -> expert table: every entry must name one of
  // the experts, or routing would read outside the expert weights.
  absl::Status CheckRoutingTable(const std::string& name, const Tensor& table) const {
    const int64_t experts = c_.n_routed_experts, k = table.rank == 2 ? table.dim(1) : 1;
    for (int64_t i = 0; i < table.numel(); ++i) {
      int64_t id = 0;
      if (table.dtype == DType::kI32) {
        id = table.as<const int32_t>()[i];
      } else if (table.dtype == DType::kI64) {
        id = table.as<const int64_t>()[i];
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat(name, ": expected an integer table, got ", DTypeName(table.dtype)));
      }
      if (id < 0 || id >= experts) {
        return absl::InvalidArgumentError(absl::StrCat(name, ": entry ", i, " (token ", i / k,
                                                       ") is expert ", id, ", outside [0, ",
                                                       experts, ")"));
      }
    }
    return absl::OkStatus();
  }

  const WeightStore& ws_;
  const ModelConfig& c_;
};

// fn(i) for i in [0, n), over the machine's cores (a V4-Flash layer is ~3 GB).
template <typename Fn>
void ParallelFor(int64_t n, Fn fn) {
  const int64_t threads = std::clamp<int64_t>(std::thread::hardware_concurrency(), 1, 16);
  if (n < (int64_t{1} << 16) || threads == 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::vector<std::thread> pool;
  for (int64_t t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int64_t i = n * t / threads; i < n * (t + 1) / threads; ++i) fn(i);
    });
  }
  for (std::thread& th : pool) th.join();
}

// The E8M0 byte of 2^-e.
uint8_t E8m0(int e) { return static_cast<uint8_t>(127 - e); }

class Random final : public WeightSource {
 public:
  Random(const ModelConfig& c, uint64_t seed) : c_(c), seed_(seed) {}

  absl::StatusOr<Tensor> Vector(const TensorSpec& spec) override {
    using F = TensorField;
    const uint64_t key = Key(spec);
    Tensor t(nullptr, DType::kF32, {});
    t.rank = static_cast<int>(spec.shape.size());
    std::copy(spec.shape.begin(), spec.shape.end(), t.shape.begin());
    const int64_t n = t.numel();
    const int64_t cols = spec.shape.back();
    switch (spec.field) {
      case F::kEmbed: {  // bf16 ~U(-1, 1): what the first norm sees
        t.dtype = DType::kBF16;
        auto* v = static_cast<uint16_t*>(Take(t.bytes(), &t));
        ParallelFor(n, [&](int64_t i) { v[i] = FloatToBf16(Uniform(key, i)); });
        return t;
      }
      case F::kTid2eid: {  // K distinct experts a token
        t.dtype = DType::kI32;
        auto* v = static_cast<int32_t*>(Take(t.bytes(), &t));
        const int64_t E = c_.n_routed_experts;
        ParallelFor(spec.shape[0], [&](int64_t tok) {
          const int64_t first = static_cast<int64_t>(SplitMix64(key + tok) % E);
          for (int64_t j = 0; j < cols; ++j)
            v[tok * cols + j] = static_cast<int32_t>((first + j) % E);
        });
        return t;
      }
      default:
        break;
    }
    float* v = static_cast<float*>(Take(t.bytes(), &t));
    float scale = 0.0f, constant = 0.0f;
    switch (spec.field) {
      case F::kHcHeadFn:
      case F::kHcAttnFn:
      case F::kHcFfnFn:
        scale = 1.0f / std::sqrt(static_cast<float>(cols));
        break;
      case F::kCompApe:
      case F::kIndexCompApe:
        scale = 0.1f;
        break;
      case F::kHcHeadBase:
      case F::kHcAttnBase:
      case F::kHcFfnBase:
      case F::kSinks:
      case F::kGateBias:
        break;
      default:  // norm weights, hyper-connection scales
        constant = 1.0f;
    }
    ParallelFor(n, [&](int64_t i) { v[i] = constant + scale * Uniform(key, i); });
    return t;
  }

  absl::StatusOr<HostWeight> Matrix(const TensorSpec& spec) override {
    const int64_t N = spec.shape[0], K = spec.shape[1];
    const uint64_t key = Key(spec);
    HostWeight w;
    w.rows = N;
    w.cols = K;
    w.name = spec.names.front() + ".weight (random)";
    w.format = ReleasedFormat(spec.field, c_.quant);
    w.pow2_act_scales = c_.quant.pow2_scales;
    // Products keep unit scale: |w| ~ 1/sqrt(K).
    const int e = static_cast<int>(std::lround(std::log2(std::sqrt(static_cast<double>(K)))));
    switch (w.format) {
      case WeightFormat::kDense: {
        w.data = Tensor(nullptr, DType::kBF16, {N, K});
        auto* v = static_cast<uint16_t*>(Take(w.data.bytes(), &w.data));
        const float s = std::ldexp(1.0f, -e);
        ParallelFor(N * K, [&](int64_t i) { v[i] = FloatToBf16(s * Uniform(key, i)); });
        return w;
      }
      case WeightFormat::kFp8: {
        const int64_t b = quant::kFp8Block;
        w.data = Tensor(nullptr, DType::kF8E4M3, {N, K});
        w.scale = Tensor(nullptr, DType::kE8M0, {(N + b - 1) / b, (K + b - 1) / b});
        // Bit 6 clear: exponents 0..7, |value| < 2, never NaN.
        FillBytes(key, &w.data, 0xBF);
        std::fill_n(static_cast<uint8_t*>(Take(w.scale.bytes(), &w.scale)), w.scale.numel(),
                    E8m0(e));
        return w;
      }
      case WeightFormat::kFp4: {
        if (K % quant::kFp4Group != 0) {
          return absl::InvalidArgumentError(
              absl::StrCat(spec.names.front(), ": FP4 needs K divisible by ", quant::kFp4Group));
        }
        w.data = Tensor(nullptr, DType::kU8, {N, K / 2});
        w.scale = Tensor(nullptr, DType::kE8M0, {N, K / quant::kFp4Group});
        FillBytes(key, &w.data, 0xFF);  // every e2m1 code is finite (|value| <= 6)
        std::fill_n(static_cast<uint8_t*>(Take(w.scale.bytes(), &w.scale)), w.scale.numel(),
                    E8m0(e + 2));
        return w;
      }
    }
    return absl::InternalError("random weights: unknown format");
  }

  void Release() override { buffers_.clear(); }

 private:
  // From the tensor's name, not the load order: ranks that load only their
  // own experts (docs/expert-parallel.md) still get the same replicated weights.
  uint64_t Key(const TensorSpec& spec) const {
    uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
    for (char ch : spec.names.front()) h = (h ^ static_cast<uint8_t>(ch)) * 0x100000001b3ull;
    return SplitMix64(seed_ ^ SplitMix64(h));
  }
  // Uniform in [-1, 1) from element i's hash.
  static float Uniform(uint64_t key, int64_t i) {
    return static_cast<float>(static_cast<int32_t>(SplitMix64(key + i) >> 32)) * 0x1p-31f;
  }
  void FillBytes(uint64_t key, Tensor* t, uint8_t mask) {
    auto* bytes = static_cast<uint8_t*>(Take(t->bytes(), t));
    const int64_t n = static_cast<int64_t>(t->bytes());
    ParallelFor((n + 7) / 8, [&](int64_t w) {
      uint64_t r = SplitMix64(key + w);
      for (int64_t i = w * 8; i < std::min(n, w * 8 + 8); ++i, r >>= 8) bytes[i] = (r & mask);
    });
  }
  void* Take(size_t bytes, Tensor* t) {
    buffers_.emplace_back(new uint8_t[std::max<size_t>(bytes, 1)]);
    t->data = buffers_.back().get();
    return t->data;
  }

  const ModelConfig& c_;
  uint64_t seed_;
  std::vector<std::unique_ptr<uint8_t[]>> buffers_;
};

}  // namespace

std::unique_ptr<WeightSource> CheckpointSource(const WeightStore& store,
                                               const ModelConfig& config) {
  return std::make_unique<Checkpoint>(store, config);
}

std::unique_ptr<WeightSource> RandomSource(const ModelConfig& config, uint64_t seed) {
  return std::make_unique<Random>(config, seed);
}

}  // namespace moegraph
