// The CPU backend: fp32 activations in host memory, every op validated here
// and computed by the reference kernels in kernels/cpu.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/backend/backend.h"
#include "engine/backend/operand_check.h"
#include "engine/common/bf16.h"
#include "engine/common/status_macros.h"
#include "engine/sampling/device_row.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/compressor.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/exchange.h"
#include "kernels/cpu/expert_pairs.h"
#include "kernels/cpu/experts.h"
#include "kernels/cpu/hyper_connection.h"
#include "kernels/cpu/indexer.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/rmsnorm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/router.h"

namespace moegraph {
namespace {

constexpr size_t kAlignment = 64;
constexpr int64_t kAny = kAnyDim;

absl::StatusOr<cpu::WeightType> WeightTypeOf(const char* op, const char* operand, const Tensor& w) {
  if (w.dtype == DType::kBF16) return cpu::WeightType::kBF16;
  if (w.dtype == DType::kF32) return cpu::WeightType::kF32;
  return OperandError(op,
                      absl::StrCat(operand, ": expected F32 or BF16, found ", DTypeName(w.dtype)));
}

cpu::BatchLayout Layout(const StepMeta& m) {
  cpu::BatchLayout b;
  b.num_tokens = m.num_tokens;
  b.num_seqs = m.num_seqs;
  b.token_pos = m.token_pos.as<const int32_t>();
  b.token_seq = m.token_seq.as<const int32_t>();
  b.seq_begin = m.seq_begin.as<const int32_t>();
  b.seq_slot = m.seq_slot.as<const int32_t>();
  b.seq_start_pos = m.seq_start_pos.as<const int32_t>();
  return b;
}

absl::Status CheckMeta(const char* op, const StepMeta& m, int num_slots) {
  const int T = m.num_tokens, S = m.num_seqs;
  for (auto [name, t, n] : {std::tuple{"meta.token_pos", &m.token_pos, T},
                            std::tuple{"meta.token_seq", &m.token_seq, T},
                            std::tuple{"meta.seq_begin", &m.seq_begin, S + 1},
                            std::tuple{"meta.seq_slot", &m.seq_slot, S},
                            std::tuple{"meta.seq_start_pos", &m.seq_start_pos, S}}) {
    absl::Status s = ExpectOperand(op, name, *t, {DType::kI32}, {n});
    if (!s.ok()) return s;
  }
  const int32_t* begin = m.seq_begin.as<const int32_t>();
  const int32_t* slot = m.seq_slot.as<const int32_t>();
  const int32_t* start = m.seq_start_pos.as<const int32_t>();
  const int32_t* pos = m.token_pos.as<const int32_t>();
  const int32_t* seq = m.token_seq.as<const int32_t>();
  if (begin[0] != 0 || begin[S] != T)
    return OperandError(op, "meta.seq_begin does not cover the tokens");
  for (int s = 0; s < S; ++s) {
    if (begin[s + 1] < begin[s]) return OperandError(op, "meta.seq_begin is not ascending");
    if (slot[s] < 0 || slot[s] >= num_slots) {
      return OperandError(
          op, absl::StrCat("meta.seq_slot[", s, "] = ", slot[s], " outside [0, ", num_slots, ")"));
    }
    if (start[s] < 0) return OperandError(op, absl::StrCat("meta.seq_start_pos[", s, "] < 0"));
    for (int t = begin[s]; t < begin[s + 1]; ++t) {
      if (seq[t] != s || pos[t] != start[s] + (t - begin[s])) {
        return OperandError(
            op, absl::StrCat("meta.token_seq/token_pos disagree with the sequences at token ", t));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<cpu::EntryPagesView> PagesView(const char* op, const EntryPages& e, int width) {
  absl::Status s =
      ExpectOperand(op, "entries.pool", e.pool, {DType::kF32}, {kAny, e.page_size, kAny, width});
  if (!s.ok()) return s;
  s = ExpectOperand(op, "entries.table", e.table, {DType::kI32}, {kAny, kAny});
  if (!s.ok()) return s;
  if (e.page_size <= 0) return OperandError(op, "entries.page_size must be positive");
  if (e.layer < 0 || e.layer >= e.pool.dim(2)) {
    return OperandError(
        op, absl::StrCat("entries.layer ", e.layer, " outside [0, ", e.pool.dim(2), ")"));
  }
  cpu::EntryPagesView v;
  v.pool = e.pool.as<float>();
  v.table = e.table.as<const int32_t>();
  v.num_pages = e.pool.dim(0);
  v.num_slots = static_cast<int>(e.table.dim(0));
  v.max_pages = static_cast<int>(e.table.dim(1));
  v.page_size = e.page_size;
  v.layers = static_cast<int>(e.pool.dim(2));
  v.layer = e.layer;
  v.width = width;
  return v;
}

int64_t MaxPosition(const StepMeta& m) {
  int64_t mx = 0;
  const int32_t* pos = m.token_pos.as<const int32_t>();
  for (int t = 0; t < m.num_tokens; ++t) mx = std::max<int64_t>(mx, pos[t]);
  return mx;
}

// Host f32 copy of a checkpoint matrix, dequantized (quant.h).
std::vector<float> Dequantize(const HostWeight& h) {
  std::vector<float> out(static_cast<size_t>(h.rows * h.cols));
  const auto* data = static_cast<const uint8_t*>(h.data.data);
  const auto* scale = static_cast<const uint8_t*>(h.scale.data);
  if (h.format == WeightFormat::kFp8) {
    const bool f32 = h.scale.dtype == DType::kF32;
    quant::DequantizeFp8(data, f32 ? nullptr : scale, f32 ? h.scale.as<const float>() : nullptr,
                         h.rows, h.cols, out.data());
  } else {
    quant::DequantizeFp4(data, scale, h.rows, h.cols, out.data());
  }
  return out;
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const CpuBackendOptions& options) : options_(options) {}
  std::string name() const override { return "cpu"; }
  std::string id() const override { return "cpu"; }
  DType activation_dtype() const override { return DType::kF32; }

  absl::StatusOr<Buffer> Allocate(size_t bytes) override {
    const size_t rounded = (std::max<size_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
    void* p = std::aligned_alloc(kAlignment, rounded);
    if (p == nullptr) {
      return absl::ResourceExhaustedError(absl::StrCat("cpu: cannot allocate ", bytes, " bytes"));
    }
    return Buffer(this, p, bytes);
  }
  void Free(void* ptr) override { std::free(ptr); }
  absl::Status Upload(void* dst, const void* src, size_t bytes) override {
    if (bytes) std::memcpy(dst, src, bytes);
    return absl::OkStatus();
  }
  absl::Status Download(void* dst, const void* src, size_t bytes) override {
    if (bytes) std::memcpy(dst, src, bytes);
    return absl::OkStatus();
  }
  absl::Status Fill(Tensor t, float value) override {
    if (t.empty()) return OperandError("Fill", "t is empty");
    const int64_t n = t.numel();
    switch (t.dtype) {
      case DType::kF32:
        std::fill(t.as<float>(), t.as<float>() + n, value);
        break;
      case DType::kI32:
        std::fill(t.as<int32_t>(), t.as<int32_t>() + n, static_cast<int32_t>(value));
        break;
      case DType::kBF16:
        std::fill(t.as<uint16_t>(), t.as<uint16_t>() + n, FloatToBf16(value));
        break;
      default:
        return OperandError("Fill", absl::StrCat("t: unsupported dtype ", DTypeName(t.dtype)));
    }
    return absl::OkStatus();
  }
  absl::Status Synchronize() override { return absl::OkStatus(); }

  absl::StatusOr<Tensor> UploadWeight(const Tensor& host, bool matrix,
                                      std::vector<Buffer>* owner) override {
    if (host.empty() && host.numel() != 0)
      return OperandError("UploadWeight", "host tensor is empty");
    DType out_type;
    switch (host.dtype) {
      case DType::kBF16:
        out_type = matrix ? DType::kBF16 : DType::kF32;
        break;
      case DType::kF32:
      case DType::kF16:
        out_type = DType::kF32;
        break;
      case DType::kI32:
      case DType::kI64:
        out_type = DType::kI32;
        break;
      default:
        return OperandError("UploadWeight", "unsupported dtype");
    }
    Tensor out = host;
    out.dtype = out_type;
    ASSIGN_OR_RETURN(Buffer buf, Allocate(out.bytes()));
    out.data = buf.data();
    ConvertHost(host, out, 0, host.numel());
    owner->push_back(std::move(buf));
    return out;
  }

  absl::StatusOr<Tensor> UploadStacked(const std::vector<Tensor>& host,
                                       std::vector<Buffer>* owner) override {
    if (host.empty()) return OperandError("UploadStacked", "no tensors");
    bool all_bf16 = true;
    for (const Tensor& t : host) {
      if (t.rank != 2 || t.shape[0] != host[0].shape[0] || t.shape[1] != host[0].shape[1]) {
        return OperandError("UploadStacked",
                            absl::StrCat("expected [N, K] tensors of one shape, found ",
                                         t.ShapeString(), " and ", host[0].ShapeString()));
      }
      if (t.dtype != DType::kBF16 && t.dtype != DType::kF32 && t.dtype != DType::kF16) {
        return OperandError("UploadStacked",
                            absl::StrCat("unsupported dtype ", DTypeName(t.dtype)));
      }
      all_bf16 &= t.dtype == DType::kBF16;
    }
    const int64_t per = host[0].numel();
    Tensor out(nullptr, all_bf16 ? DType::kBF16 : DType::kF32,
               {static_cast<int64_t>(host.size()), host[0].shape[0], host[0].shape[1]});
    ASSIGN_OR_RETURN(Buffer buf, Allocate(out.bytes()));
    out.data = buf.data();
    for (size_t e = 0; e < host.size(); ++e) ConvertHost(host[e], out, e * per, per);
    owner->push_back(std::move(buf));
    return out;
  }

  // Quantized matrices are dequantized to f32 here: the CPU is the exact
  // reference, and `source` remembers the format for activation emulation.
  absl::StatusOr<Weight> UploadMatrix(const HostWeight& host, std::vector<Buffer>* owner) override {
    Weight w;
    if (host.format == WeightFormat::kDense) {
      ASSIGN_OR_RETURN(w.data, UploadWeight(host.data, true, owner));
    } else {
      std::vector<float> f = Dequantize(host);
      ASSIGN_OR_RETURN(
          w.data, UploadWeight(Tensor(f.data(), DType::kF32, {host.rows, host.cols}), true, owner));
    }
    w.source = host.format;
    w.pow2_act_scales = host.pow2_act_scales;
    return w;
  }

  absl::StatusOr<Weight> UploadStackedMatrices(const std::vector<HostWeight>& host,
                                               std::vector<Buffer>* owner) override {
    if (host.empty()) return OperandError("UploadStackedMatrices", "no matrices");
    std::vector<std::vector<float>> dequantized;
    std::vector<Tensor> views;
    for (const HostWeight& h : host) {
      if (h.format != host[0].format) {
        return OperandError("UploadStackedMatrices",
                            absl::StrCat(h.name, " is ", WeightFormatName(h.format), " but ",
                                         host[0].name, " is ", WeightFormatName(host[0].format)));
      }
      if (h.format == WeightFormat::kDense) {
        views.push_back(h.data);
      } else {
        dequantized.push_back(Dequantize(h));
        views.push_back(Tensor(dequantized.back().data(), DType::kF32, {h.rows, h.cols}));
      }
    }
    Weight w;
    ASSIGN_OR_RETURN(w.data, UploadStacked(views, owner));
    w.source = host[0].format;
    w.pow2_act_scales = host[0].pow2_act_scales;
    return w;
  }

  absl::Status Embed(const Tensor& ids, const Tensor& table, Tensor out) override {
    const int64_t T = ids.dim(0);
    RETURN_IF_ERROR(ExpectOperand("Embed", "ids", ids, {DType::kI32}, {kAny}));
    RETURN_IF_ERROR(
        ExpectOperand("Embed", "table", table, {DType::kF32, DType::kBF16}, {kAny, kAny}));
    RETURN_IF_ERROR(ExpectOperand("Embed", "out", out, {DType::kF32}, {T, kAny, table.dim(1)}));
    cpu::EmbeddingParams p;
    p.ids = ids.as<const int32_t>();
    p.table = table.data;
    ASSIGN_OR_RETURN(p.table_type, WeightTypeOf("Embed", "table", table));
    p.out = out.as<float>();
    p.tokens = T;
    p.vocab = table.dim(0);
    p.dim = table.dim(1);
    p.streams = static_cast<int>(out.dim(1));
    if (!cpu::Embedding(p)) return OperandError("Embed", "ids: token id outside the vocabulary");
    return absl::OkStatus();
  }

  absl::Status Linear(const Tensor& x, const Weight& weight, Tensor y) override {
    const Tensor& w = weight.data;
    RETURN_IF_ERROR(DenseOnly("Linear", weight));
    RETURN_IF_ERROR(ExpectOperand("Linear", "w", w, {DType::kF32, DType::kBF16}, {kAny, kAny}));
    RETURN_IF_ERROR(ExpectOperand("Linear", "x", x, {DType::kF32}, {kAny, w.dim(1)}));
    RETURN_IF_ERROR(ExpectOperand("Linear", "y", y, {DType::kF32}, {x.dim(0), w.dim(0)}));
    cpu::LinearParams p;
    p.x = ActivationFor(weight, x);
    p.w = w.data;
    ASSIGN_OR_RETURN(p.w_type, WeightTypeOf("Linear", "w", w));
    p.y = y.as<float>();
    p.rows = x.dim(0);
    p.in = x.dim(1);
    p.out = w.dim(0);
    cpu::Linear(p);
    return absl::OkStatus();
  }

  absl::Status GroupedLinear(const Tensor& x, const Weight& weight, int groups, Tensor y) override {
    const Tensor& w = weight.data;
    RETURN_IF_ERROR(DenseOnly("GroupedLinear", weight));
    RETURN_IF_ERROR(
        ExpectOperand("GroupedLinear", "w", w, {DType::kF32, DType::kBF16}, {kAny, kAny}));
    if (groups <= 0 || w.dim(0) % groups != 0) {
      return OperandError("GroupedLinear",
                          absl::StrCat("groups ", groups, " does not divide w rows ", w.dim(0)));
    }
    RETURN_IF_ERROR(
        ExpectOperand("GroupedLinear", "x", x, {DType::kF32}, {kAny, groups * w.dim(1)}));
    RETURN_IF_ERROR(ExpectOperand("GroupedLinear", "y", y, {DType::kF32}, {x.dim(0), w.dim(0)}));
    cpu::GroupedLinearParams p;
    p.x = ActivationFor(weight, x);
    p.w = w.data;
    ASSIGN_OR_RETURN(p.w_type, WeightTypeOf("GroupedLinear", "w", w));
    p.y = y.as<float>();
    p.rows = x.dim(0);
    p.groups = groups;
    p.in_per_group = w.dim(1);
    p.out_per_group = w.dim(0) / groups;
    cpu::GroupedLinear(p);
    return absl::OkStatus();
  }

  absl::Status RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor y) override {
    RETURN_IF_ERROR(ExpectOperand("RmsNorm", "x", x, {DType::kF32}, {kAny, kAny}));
    RETURN_IF_ERROR(ExpectOperand("RmsNorm", "y", y, {DType::kF32}, {x.dim(0), x.dim(1)}));
    if (!weight.empty()) {
      RETURN_IF_ERROR(ExpectOperand("RmsNorm", "weight", weight, {DType::kF32}, {x.dim(1)}));
    }
    cpu::RmsNormParams p;
    p.x = x.as<const float>();
    p.weight = weight.empty() ? nullptr : weight.as<const float>();
    p.y = y.as<float>();
    p.rows = x.dim(0);
    p.cols = x.dim(1);
    p.eps = eps;
    cpu::RmsNorm(p);
    return absl::OkStatus();
  }

  absl::Status Rope(Tensor x, const Tensor& pos, const Tensor& inv_freq, int rope_dim,
                    bool inverse) override {
    RETURN_IF_ERROR(ExpectOperand("Rope", "x", x, {DType::kF32}, {kAny, kAny, kAny}));
    RETURN_IF_ERROR(ExpectOperand("Rope", "pos", pos, {DType::kI32}, {x.dim(0)}));
    if (rope_dim <= 0 || rope_dim % 2 || rope_dim > x.dim(2)) {
      return OperandError(
          "Rope", absl::StrCat("rope_dim ", rope_dim, " must be even and in (0, ", x.dim(2), "]"));
    }
    RETURN_IF_ERROR(ExpectOperand("Rope", "inv_freq", inv_freq, {DType::kF32}, {rope_dim / 2}));
    cpu::RopeParams p;
    p.x = x.as<float>();
    p.pos = pos.as<const int32_t>();
    p.inv_freq = inv_freq.as<const float>();
    p.tokens = x.dim(0);
    p.heads = x.dim(1);
    p.width = x.dim(2);
    p.rope_dim = rope_dim;
    p.inverse = inverse;
    cpu::Rope(p);
    return absl::OkStatus();
  }

  absl::Status Add(const Tensor& a, const Tensor& b, Tensor out) override {
    RETURN_IF_ERROR(SameShape("Add", "b", a, b));
    RETURN_IF_ERROR(SameShape("Add", "out", a, out));
    if (a.dtype != DType::kF32) return OperandError("Add", "a: expected F32");
    cpu::Add(a.as<const float>(), b.as<const float>(), out.as<float>(), a.numel());
    return absl::OkStatus();
  }

  absl::Status Scale(const Tensor& x, float alpha, Tensor out) override {
    if (x.empty() || out.empty()) return OperandError("Scale", "x or out is empty");
    if (x.dtype != DType::kF32 || out.dtype != DType::kF32 || x.numel() != out.numel()) {
      return OperandError("Scale",
                          absl::StrCat("out: expected F32 with ", x.numel(), " elements, found ",
                                       DTypeName(out.dtype), " ", out.ShapeString()));
    }
    cpu::Scale(x.as<const float>(), alpha, out.as<float>(), x.numel());
    return absl::OkStatus();
  }

  absl::Status SwiGlu(const Tensor& a, const Tensor& b, float limit, Tensor out) override {
    RETURN_IF_ERROR(ExpectOperand("SwiGlu", "a", a, {DType::kF32}, {kAny, kAny}));
    RETURN_IF_ERROR(SameShape("SwiGlu", "b", a, b));
    RETURN_IF_ERROR(SameShape("SwiGlu", "out", a, out));
    cpu::SwiGlu(a.as<const float>(), b.as<const float>(), limit, out.as<float>(), a.numel());
    return absl::OkStatus();
  }

  absl::Status GatherRows(const Tensor& x, const Tensor& rows, Tensor out) override {
    RETURN_IF_ERROR(ExpectOperand("GatherRows", "x", x, {DType::kF32, DType::kI32}, {kAny, kAny}));
    RETURN_IF_ERROR(ExpectOperand("GatherRows", "rows", rows, {DType::kI32}, {kAny}));
    RETURN_IF_ERROR(ExpectOperand("GatherRows", "out", out, {x.dtype}, {rows.dim(0), x.dim(1)}));
    const size_t row_bytes = x.dim(1) * DTypeSize(x.dtype);
    const int32_t* r = rows.as<const int32_t>();
    for (int64_t i = 0; i < rows.dim(0); ++i) {
      if (r[i] < 0 || r[i] >= x.dim(0)) {
        return OperandError("GatherRows",
                            absl::StrCat("rows[", i, "] = ", r[i], " outside [0, ", x.dim(0), ")"));
      }
      std::memcpy(static_cast<char*>(out.data) + i * row_bytes,
                  static_cast<const char*>(x.data) + r[i] * row_bytes, row_bytes);
    }
    return absl::OkStatus();
  }

  // The device sampler's contract on the host (sampling::SampleStagedRows):
  // lets the engine's staged-sampling and pipelined paths run without a GPU.
  absl::Status Sample(const Tensor& logits, const Tensor& params, Tensor ids) override {
    RETURN_IF_ERROR(ExpectOperand("Sample", "logits", logits, {DType::kF32}, {kAny, kAny}));
    const int64_t R = logits.dim(0);
    RETURN_IF_ERROR(
        ExpectOperand("Sample", "params", params, {DType::kI32}, {R, cuda::kSampleRowWords}));
    RETURN_IF_ERROR(ExpectOperand("Sample", "ids", ids, {DType::kI32}, {kAny}));
    if (ids.numel() < cuda::SampleOutputWords(R)) {
      return OperandError("Sample",
                          absl::StrCat("ids: expected at least ", cuda::SampleOutputWords(R),
                                       " words, found ", ids.numel()));
    }
    sampling::SampleStagedRows(logits.as<const float>(), R, logits.dim(1),
                               reinterpret_cast<const cuda::SampleRowParams*>(params.data),
                               ids.as<int32_t>(), &sampler_);
    return absl::OkStatus();
  }

  absl::Status TakeSampledIds(Tensor ids, const Tensor& from, const Tensor& sampled) override {
    RETURN_IF_ERROR(ExpectOperand("TakeSampledIds", "ids", ids, {DType::kI32}, {kAny}));
    RETURN_IF_ERROR(ExpectOperand("TakeSampledIds", "from", from, {DType::kI32}, {ids.dim(0)}));
    RETURN_IF_ERROR(ExpectOperand("TakeSampledIds", "sampled", sampled, {DType::kI32}, {kAny}));
    const int32_t* f = from.as<const int32_t>();
    const int32_t* s = sampled.as<const int32_t>();
    int32_t* out = ids.as<int32_t>();
    for (int64_t i = 0; i < ids.dim(0); ++i) {
      if (f[i] >= 0 && f[i] < sampled.dim(0)) out[i] = s[f[i]];
    }
    return absl::OkStatus();
  }

  absl::Status Convert(const Tensor& x, Tensor out) override {
    if (x.empty() || out.empty() || x.numel() != out.numel()) {
      return OperandError("Convert", "out: expected the element count of x");
    }
    if (out.dtype != DType::kF32 && out.dtype != DType::kBF16) {
      return OperandError("Convert", "out: expected F32 or BF16");
    }
    if (out.dtype == DType::kBF16) {
      if (x.dtype != DType::kF32) return OperandError("Convert", "x: expected F32");
      for (int64_t i = 0; i < x.numel(); ++i) out.as<uint16_t>()[i] = FloatToBf16(x.as<float>()[i]);
      return absl::OkStatus();
    }
    ConvertHost(x, out, 0, x.numel());
    return absl::OkStatus();
  }

  absl::Status ScatterPairs(Tensor dst, const Tensor& pairs, const Tensor& count) override {
    RETURN_IF_ERROR(ExpectOperand("ScatterPairs", "dst", dst, {DType::kI32}, {kAny}));
    RETURN_IF_ERROR(ExpectOperand("ScatterPairs", "pairs", pairs, {DType::kI32}, {kAny}));
    RETURN_IF_ERROR(ExpectOperand("ScatterPairs", "count", count, {DType::kI32}, {1}));
    const int64_t n = std::min<int64_t>(count.as<int32_t>()[0], pairs.numel() / 2);
    for (int64_t i = 0; i < n; ++i) {
      const int32_t at = pairs.as<int32_t>()[2 * i];
      if (at < 0 || at >= dst.numel())
        return OperandError("ScatterPairs", "pairs: index outside dst");
      dst.as<int32_t>()[at] = pairs.as<int32_t>()[2 * i + 1];
    }
    return absl::OkStatus();
  }

  absl::Status HcPre(const Tensor& X, const Tensor& fn, const Tensor& base, const Tensor& scale,
                     int sinkhorn_iters, float hc_eps, float norm_eps, Tensor x_in, Tensor post,
                     Tensor comb) override {
    RETURN_IF_ERROR(ExpectOperand("HcPre", "X", X, {DType::kF32}, {kAny, kAny, kAny}));
    const int64_t T = X.dim(0), n = X.dim(1), D = X.dim(2);
    if (n < 1 || n > cpu::kMaxHcStreams)
      return OperandError("HcPre", "X: unsupported stream count");
    RETURN_IF_ERROR(ExpectOperand("HcPre", "fn", fn, {DType::kF32}, {(2 + n) * n, n * D}));
    RETURN_IF_ERROR(ExpectOperand("HcPre", "base", base, {DType::kF32}, {(2 + n) * n}));
    RETURN_IF_ERROR(ExpectOperand("HcPre", "scale", scale, {DType::kF32}, {3}));
    RETURN_IF_ERROR(ExpectOperand("HcPre", "x_in", x_in, {DType::kF32}, {T, D}));
    RETURN_IF_ERROR(ExpectOperand("HcPre", "post", post, {DType::kF32}, {T, n}));
    RETURN_IF_ERROR(ExpectOperand("HcPre", "comb", comb, {DType::kF32}, {T, n, n}));
    if (sinkhorn_iters < 1) return OperandError("HcPre", "sinkhorn_iters must be >= 1");
    cpu::HcPreParams p;
    p.X = X.as<const float>();
    p.fn = fn.as<const float>();
    p.base = base.as<const float>();
    p.scale = scale.as<const float>();
    p.x_in = x_in.as<float>();
    p.post = post.as<float>();
    p.comb = comb.as<float>();
    p.tokens = T;
    p.dim = D;
    p.n = static_cast<int>(n);
    p.sinkhorn_iters = sinkhorn_iters;
    p.hc_eps = hc_eps;
    p.norm_eps = norm_eps;
    cpu::HcPre(p);
    return absl::OkStatus();
  }

  absl::Status HcPost(const Tensor& X, const Tensor& y, const Tensor& post, const Tensor& comb,
                      Tensor Xout) override {
    RETURN_IF_ERROR(ExpectOperand("HcPost", "X", X, {DType::kF32}, {kAny, kAny, kAny}));
    const int64_t T = X.dim(0), n = X.dim(1), D = X.dim(2);
    RETURN_IF_ERROR(ExpectOperand("HcPost", "y", y, {DType::kF32}, {T, D}));
    RETURN_IF_ERROR(ExpectOperand("HcPost", "post", post, {DType::kF32}, {T, n}));
    RETURN_IF_ERROR(ExpectOperand("HcPost", "comb", comb, {DType::kF32}, {T, n, n}));
    RETURN_IF_ERROR(ExpectOperand("HcPost", "Xout", Xout, {DType::kF32}, {T, n, D}));
    if (Xout.data == X.data) return OperandError("HcPost", "Xout must not alias X");
    cpu::HcPostParams p;
    p.X = X.as<const float>();
    p.y = y.as<const float>();
    p.post = post.as<const float>();
    p.comb = comb.as<const float>();
    p.Xout = Xout.as<float>();
    p.tokens = T;
    p.dim = D;
    p.n = static_cast<int>(n);
    cpu::HcPost(p);
    return absl::OkStatus();
  }

  absl::Status HcHead(const Tensor& X, const Tensor& fn, const Tensor& base, const Tensor& scale,
                      float hc_eps, float norm_eps, Tensor y) override {
    RETURN_IF_ERROR(ExpectOperand("HcHead", "X", X, {DType::kF32}, {kAny, kAny, kAny}));
    const int64_t T = X.dim(0), n = X.dim(1), D = X.dim(2);
    if (n < 1 || n > cpu::kMaxHcStreams)
      return OperandError("HcHead", "X: unsupported stream count");
    RETURN_IF_ERROR(ExpectOperand("HcHead", "fn", fn, {DType::kF32}, {n, n * D}));
    RETURN_IF_ERROR(ExpectOperand("HcHead", "base", base, {DType::kF32}, {n}));
    RETURN_IF_ERROR(ExpectOperand("HcHead", "scale", scale, {DType::kF32}, {1}));
    RETURN_IF_ERROR(ExpectOperand("HcHead", "y", y, {DType::kF32}, {T, D}));
    cpu::HcHeadParams p;
    p.X = X.as<const float>();
    p.fn = fn.as<const float>();
    p.base = base.as<const float>();
    p.scale = scale.as<const float>();
    p.y = y.as<float>();
    p.tokens = T;
    p.dim = D;
    p.n = static_cast<int>(n);
    p.hc_eps = hc_eps;
    p.norm_eps = norm_eps;
    cpu::HcHead(p);
    return absl::OkStatus();
  }

  absl::Status CompressorUpdate(const Tensor& c, const Tensor& z, const CompressorParams& params,
                                const StepMeta& meta) override {
    const char* op = "CompressorUpdate";
    const int T = meta.num_tokens;
    const int width = params.width, rate = params.rate;
    if (width <= 0 || rate <= 0) return OperandError(op, "width and rate must be positive");
    const int cw = params.overlap ? 2 * width : width;
    const int ring_len = params.overlap ? 2 * rate : rate;
    RETURN_IF_ERROR(ExpectOperand(op, "c", c, {DType::kF32}, {T, cw}));
    RETURN_IF_ERROR(ExpectOperand(op, "z", z, {DType::kF32}, {T, cw}));
    RETURN_IF_ERROR(ExpectOperand(op, "ape", params.ape, {DType::kF32}, {rate, cw}));
    RETURN_IF_ERROR(ExpectOperand(op, "norm_weight", params.norm_weight, {DType::kF32}, {width}));
    if (params.rope_dim <= 0 || params.rope_dim % 2 || params.rope_dim > width) {
      return OperandError(
          op, absl::StrCat("rope_dim ", params.rope_dim, " must be even and in (0, ", width, "]"));
    }
    RETURN_IF_ERROR(
        ExpectOperand(op, "inv_freq", params.inv_freq, {DType::kF32}, {params.rope_dim / 2}));
    RETURN_IF_ERROR(
        ExpectOperand(op, "ring", params.ring, {DType::kF32}, {kAny, ring_len, 2 * cw}));
    const int num_slots = static_cast<int>(params.ring.dim(0));
    RETURN_IF_ERROR(CheckMeta(op, meta, num_slots));
    cpu::CompressorParams p;
    ASSIGN_OR_RETURN(p.entries, PagesView(op, params.entries, width));
    p.c = c.as<const float>();
    p.z = z.as<const float>();
    p.ape = params.ape.as<const float>();
    p.norm_weight = params.norm_weight.as<const float>();
    p.inv_freq = params.inv_freq.as<const float>();
    p.ring = params.ring.as<float>();
    p.num_slots = num_slots;
    p.rate = rate;
    p.overlap = params.overlap;
    p.width = width;
    p.rope_dim = params.rope_dim;
    p.eps = params.eps;
    p.batch = Layout(meta);
    if (!cpu::CompressorUpdate(p)) return OperandError(op, "entries: an emitted entry has no page");
    return absl::OkStatus();
  }

  absl::Status IndexerTopK(const Tensor& q, const Tensor& weights, const EntryPages& keys, int rate,
                           float softmax_scale, const StepMeta& meta, Tensor selected) override {
    const char* op = "IndexerTopK";
    const int T = meta.num_tokens;
    RETURN_IF_ERROR(ExpectOperand(op, "q", q, {DType::kF32}, {T, kAny, kAny}));
    RETURN_IF_ERROR(ExpectOperand(op, "weights", weights, {DType::kF32}, {T, q.dim(1)}));
    RETURN_IF_ERROR(ExpectOperand(op, "selected", selected, {DType::kI32}, {T, kAny}));
    if (rate <= 0) return OperandError(op, "rate must be positive");
    cpu::IndexerTopKParams p;
    ASSIGN_OR_RETURN(p.keys, PagesView(op, keys, static_cast<int>(q.dim(2))));
    RETURN_IF_ERROR(CheckMeta(op, meta, p.keys.num_slots));
    p.q = q.as<const float>();
    p.weights = weights.as<const float>();
    p.heads = static_cast<int>(q.dim(1));
    p.rate = rate;
    p.softmax_scale = softmax_scale;
    p.k = static_cast<int>(selected.dim(1));
    p.batch = Layout(meta);
    p.selected = selected.as<int32_t>();
    workspace_.resize(cpu::IndexerTopKWorkspaceBytes((MaxPosition(meta) + 1) / rate));
    if (!cpu::IndexerTopK(p, workspace_.data()))
      return OperandError(op, "keys: a visible entry has no page");
    return absl::OkStatus();
  }

  absl::Status Attention(const Tensor& q, const Tensor& kv, const AttentionParams& params,
                         const StepMeta& meta, Tensor out) override {
    const char* op = "Attention";
    const int T = meta.num_tokens;
    RETURN_IF_ERROR(ExpectOperand(op, "q", q, {DType::kF32}, {T, kAny, kAny}));
    const int64_t H = q.dim(1), d = q.dim(2);
    RETURN_IF_ERROR(ExpectOperand(op, "kv", kv, {DType::kF32}, {T, d}));
    RETURN_IF_ERROR(ExpectOperand(op, "out", out, {DType::kF32}, {T, H, d}));
    RETURN_IF_ERROR(ExpectOperand(op, "sinks", params.sinks, {DType::kF32}, {H}));
    if (params.window <= 0) return OperandError(op, "window must be positive");
    RETURN_IF_ERROR(ExpectOperand(op, "window_ring", params.window_ring, {DType::kF32},
                                  {kAny, params.window, d}));
    const int num_slots = static_cast<int>(params.window_ring.dim(0));
    RETURN_IF_ERROR(CheckMeta(op, meta, num_slots));
    cpu::AttentionParams p;
    int64_t max_keys = params.window;
    if (!params.entries.pool.empty()) {
      if (params.rate <= 0) return OperandError(op, "rate must be positive with entries");
      ASSIGN_OR_RETURN(p.entries, PagesView(op, params.entries, static_cast<int>(d)));
      p.rate = params.rate;
      if (!params.selected.empty()) {
        RETURN_IF_ERROR(ExpectOperand(op, "selected", params.selected, {DType::kI32}, {T, kAny}));
        p.selected = params.selected.as<const int32_t>();
        p.k = static_cast<int>(params.selected.dim(1));
        max_keys += p.k;
      } else {
        max_keys += (MaxPosition(meta) + 1) / params.rate;
      }
    }
    p.q = q.as<const float>();
    p.kv = kv.as<const float>();
    p.ring = params.window_ring.as<const float>();
    p.sinks = params.sinks.as<const float>();
    p.out = out.as<float>();
    p.heads = static_cast<int>(H);
    p.dim = static_cast<int>(d);
    p.window = params.window;
    p.num_slots = num_slots;
    p.scale = params.scale;
    p.batch = Layout(meta);
    workspace_.resize(cpu::AttentionWorkspaceBytes(max_keys));
    if (!cpu::Attention(p, workspace_.data())) {
      return OperandError(op, "entries: a key entry has no page, or a selected id is not visible");
    }
    return absl::OkStatus();
  }

  absl::Status WindowUpdate(const Tensor& kv, Tensor ring, const StepMeta& meta) override {
    const char* op = "WindowUpdate";
    RETURN_IF_ERROR(ExpectOperand(op, "kv", kv, {DType::kF32}, {meta.num_tokens, kAny}));
    RETURN_IF_ERROR(ExpectOperand(op, "ring", ring, {DType::kF32}, {kAny, kAny, kv.dim(1)}));
    RETURN_IF_ERROR(CheckMeta(op, meta, static_cast<int>(ring.dim(0))));
    const int64_t W = ring.dim(1), d = kv.dim(1);
    const int32_t* begin = meta.seq_begin.as<const int32_t>();
    const int32_t* slot = meta.seq_slot.as<const int32_t>();
    const int32_t* start = meta.seq_start_pos.as<const int32_t>();
    for (int s = 0; s < meta.num_seqs; ++s) {
      const int64_t len = begin[s + 1] - begin[s];
      for (int64_t i = std::max<int64_t>(0, len - W); i < len; ++i) {
        const int64_t pos = start[s] + i;
        std::memcpy(ring.as<float>() + (slot[s] * W + pos % W) * d,
                    kv.as<const float>() + (begin[s] + i) * d, d * sizeof(float));
      }
    }
    return absl::OkStatus();
  }

  absl::Status Route(const Tensor& logits, const Tensor& bias, const Tensor& tid2eid,
                     const Tensor& token_ids, float routed_scaling, Tensor idx, Tensor w) override {
    const char* op = "Route";
    RETURN_IF_ERROR(ExpectOperand(op, "logits", logits, {DType::kF32}, {kAny, kAny}));
    const int64_t T = logits.dim(0), E = logits.dim(1);
    if (E > cpu::kMaxRouteExperts) return OperandError(op, "logits: too many experts");
    RETURN_IF_ERROR(ExpectOperand(op, "idx", idx, {DType::kI32}, {T, kAny}));
    const int64_t k = idx.dim(1);
    if (k < 1 || k > E) return OperandError(op, "idx: k must be in [1, experts]");
    RETURN_IF_ERROR(ExpectOperand(op, "w", w, {DType::kF32}, {T, k}));
    cpu::RouteParams p;
    if (!tid2eid.empty()) {
      RETURN_IF_ERROR(ExpectOperand(op, "tid2eid", tid2eid, {DType::kI32}, {kAny, k}));
      RETURN_IF_ERROR(ExpectOperand(op, "token_ids", token_ids, {DType::kI32}, {T}));
      p.tid2eid = tid2eid.as<const int32_t>();
      p.token_ids = token_ids.as<const int32_t>();
      p.vocab = tid2eid.dim(0);
    } else if (!bias.empty()) {
      RETURN_IF_ERROR(ExpectOperand(op, "bias", bias, {DType::kF32}, {E}));
      p.bias = bias.as<const float>();
    }
    p.logits = logits.as<const float>();
    p.tokens = T;
    p.experts = static_cast<int>(E);
    p.k = static_cast<int>(k);
    p.routed_scaling = routed_scaling;
    p.idx = idx.as<int32_t>();
    p.w = w.as<float>();
    if (!cpu::Route(p)) return OperandError(op, "token_ids/tid2eid: id out of range");
    return absl::OkStatus();
  }

  absl::Status MoeExperts(const Tensor& x, const Tensor& idx, const Tensor& w,
                          const ExpertWeights& experts, float swiglu_limit, Tensor out) override {
    const char* op = "MoeExperts";
    RETURN_IF_ERROR(ExpectOperand(op, "x", x, {DType::kF32}, {kAny, kAny}));
    const int64_t T = x.dim(0), D = x.dim(1);
    RETURN_IF_ERROR(ExpectOperand(op, "idx", idx, {DType::kI32}, {T, kAny}));
    RETURN_IF_ERROR(ExpectOperand(op, "w", w, {DType::kF32}, {T, idx.dim(1)}));
    for (const Weight* e : {&experts.w1, &experts.w2, &experts.w3}) {
      RETURN_IF_ERROR(DenseOnly(op, *e));
    }
    const Tensor& w1 = experts.w1.data;
    RETURN_IF_ERROR(
        ExpectOperand(op, "experts.w1", w1, {DType::kF32, DType::kBF16}, {kAny, kAny, D}));
    const int64_t E = w1.dim(0), F = w1.dim(1);
    RETURN_IF_ERROR(ExpectOperand(op, "experts.w3", experts.w3.data, {w1.dtype}, {E, F, D}));
    RETURN_IF_ERROR(ExpectOperand(op, "experts.w2", experts.w2.data, {w1.dtype}, {E, D, F}));
    RETURN_IF_ERROR(ExpectOperand(op, "out", out, {DType::kF32}, {T, D}));
    cpu::MoeExpertsParams p;
    p.x = x.as<const float>();
    p.idx = idx.as<const int32_t>();
    p.w = w.as<const float>();
    p.w1 = experts.w1.data.data;
    p.w2 = experts.w2.data.data;
    p.w3 = experts.w3.data.data;
    ASSIGN_OR_RETURN(p.w_type, WeightTypeOf(op, "experts.w1", w1));
    p.quantize_inputs = Emulates(experts.w1);
    p.pow2_scales = experts.w1.pow2_act_scales;
    p.out = out.as<float>();
    p.tokens = T;
    p.dim = D;
    p.ffn = F;
    p.experts = static_cast<int>(E);
    p.k = static_cast<int>(idx.dim(1));
    p.limit = swiglu_limit;
    workspace_.resize(cpu::MoeExpertsWorkspaceBytes(T, D, F));
    if (!cpu::MoeExperts(p, workspace_.data()))
      return OperandError(op, "idx: expert id out of range");
    return absl::OkStatus();
  }

  absl::Status MoeExpertPairs(const Tensor& x, const Tensor& experts, const Tensor& counts,
                              int first_expert, const ExpertWeights& local, float swiglu_limit,
                              Tensor out, Tensor pair_dst, Tensor pair_count) override {
    const char* op = "MoeExpertPairs";
    RETURN_IF_ERROR(ExpectOperand(op, "x", x, {DType::kF32}, {kAny, kAny}));
    const int64_t N = x.dim(0), D = x.dim(1);
    RETURN_IF_ERROR(ExpectOperand(op, "experts", experts, {DType::kI32}, {N, kAny}));
    RETURN_IF_ERROR(ExpectOperand(op, "counts", counts, {DType::kI32}, {kAny}));
    const int64_t R = counts.dim(0), k = experts.dim(1);
    if (R < 1 || N % R != 0)
      return OperandError(op, "x: rows must be a multiple of counts' length");
    RETURN_IF_ERROR(ExpectOperand(op, "pair_count", pair_count, {DType::kI32}, {1}));
    cpu::MoeExpertPairsParams p;
    if (!local.w1.empty()) {
      for (const Weight* e : {&local.w1, &local.w2, &local.w3}) RETURN_IF_ERROR(DenseOnly(op, *e));
      const Tensor& w1 = local.w1.data;
      RETURN_IF_ERROR(
          ExpectOperand(op, "local.w1", w1, {DType::kF32, DType::kBF16}, {kAny, kAny, D}));
      const int64_t E = w1.dim(0), F = w1.dim(1);
      RETURN_IF_ERROR(ExpectOperand(op, "local.w3", local.w3.data, {w1.dtype}, {E, F, D}));
      RETURN_IF_ERROR(ExpectOperand(op, "local.w2", local.w2.data, {w1.dtype}, {E, D, F}));
      RETURN_IF_ERROR(ExpectOperand(op, "out", out, {DType::kF32}, {kAny, D}));
      RETURN_IF_ERROR(ExpectOperand(op, "pair_dst", pair_dst, {DType::kI32}, {out.dim(0)}));
      p.w1 = w1.data;
      p.w2 = local.w2.data.data;
      p.w3 = local.w3.data.data;
      ASSIGN_OR_RETURN(p.w_type, WeightTypeOf(op, "local.w1", w1));
      p.quantize_inputs = Emulates(local.w1);
      p.pow2_scales = local.w1.pow2_act_scales;
      p.local_experts = static_cast<int>(E);
      p.ffn = F;
      p.out = out.as<float>();
      p.pair_dst = pair_dst.as<int32_t>();
      p.pair_capacity = out.dim(0);
    }
    p.x = x.as<const float>();
    p.experts = experts.as<const int32_t>();
    p.counts = counts.as<const int32_t>();
    p.sources = static_cast<int>(R);
    p.capacity = static_cast<int>(N / R);
    p.first_expert = first_expert;
    p.dim = D;
    p.k = static_cast<int>(k);
    p.limit = swiglu_limit;
    p.pair_count = pair_count.as<int32_t>();
    workspace_.resize(cpu::MoeExpertPairsWorkspaceBytes(N * k, D, p.ffn));
    if (!cpu::MoeExpertPairs(p, workspace_.data())) {
      return OperandError(op, "counts, experts or the pair capacity out of range");
    }
    return absl::OkStatus();
  }

  absl::Status MoeWeightedSum(const Tensor& y, const Tensor& idx, const Tensor& w,
                              Tensor out) override {
    const char* op = "MoeWeightedSum";
    RETURN_IF_ERROR(ExpectOperand(op, "y", y, {DType::kF32}, {kAny, kAny, kAny}));
    const int64_t T = y.dim(0), k = y.dim(1), D = y.dim(2);
    if (k < 1 || k > 64) return OperandError(op, "y: k must be in [1, 64]");
    RETURN_IF_ERROR(ExpectOperand(op, "idx", idx, {DType::kI32}, {T, k}));
    RETURN_IF_ERROR(ExpectOperand(op, "w", w, {DType::kF32}, {T, k}));
    RETURN_IF_ERROR(ExpectOperand(op, "out", out, {DType::kF32}, {T, D}));
    cpu::MoeWeightedSumParams p;
    p.y = y.as<const float>();
    p.idx = idx.as<const int32_t>();
    p.w = w.as<const float>();
    p.out = out.as<float>();
    p.tokens = T;
    p.dim = D;
    p.k = static_cast<int>(k);
    cpu::MoeWeightedSum(p);
    return absl::OkStatus();
  }

  absl::Status ExchangeDispatch(const Tensor& x, const Tensor& idx, const Tensor& owner,
                                const std::vector<ExchangeRegion>& to,
                                Tensor rows_scratch) override {
    RETURN_IF_ERROR(CheckExchangeDispatch(x, idx, owner, to, rows_scratch, DType::kF32));
    cpu::ExchangeDispatchParams p;
    p.x = x.as<const float>();
    p.tokens = x.dim(0);
    p.dim = x.dim(1);
    p.k = static_cast<int>(to[0].experts.dim(1));
    p.idx = p.tokens > 0 ? idx.as<const int32_t>() : nullptr;
    p.owner = owner.as<const int32_t>();
    p.num_experts = static_cast<int>(owner.dim(0));
    for (const ExchangeRegion& r : to) {
      p.to.push_back({r.x.as<float>(), r.experts.as<int32_t>(), r.src_token.as<int32_t>(),
                      r.count.as<int32_t>()});
    }
    const int64_t bad = cpu::ExchangeDispatch(p);
    if (bad >= 0) {
      return OperandError("ExchangeDispatch",
                          absl::StrCat("idx[", bad / p.k, ", ", bad % p.k, "] = ", p.idx[bad],
                                       " is not an expert"));
    }
    return absl::OkStatus();
  }

  absl::Status ExchangeCombine(const Tensor& out, const Tensor& pair_dst, const Tensor& pair_count,
                               const Tensor& src_token, const Tensor& counts,
                               const std::vector<Tensor>& combined) override {
    RETURN_IF_ERROR(
        CheckExchangeCombine(out, pair_dst, pair_count, src_token, counts, combined, DType::kF32));
    cpu::ExchangeCombineParams p;
    p.pairs = pair_count.as<const int32_t>()[0];
    if (p.pairs < 0 || p.pairs > out.dim(0)) {
      return absl::InternalError(
          absl::StrCat("ExchangeCombine: pair count ", p.pairs, " outside [0, ", out.dim(0), "]"));
    }
    p.out = out.as<const float>();
    p.pair_dst = pair_dst.as<const int32_t>();
    p.dim = out.dim(1);
    p.src_token = src_token.as<const int32_t>();
    p.counts = counts.as<const int32_t>();
    p.capacity = static_cast<int>(combined[0].dim(0));
    p.k = static_cast<int>(combined[0].dim(1));
    for (const Tensor& c : combined) p.combined.push_back(c.as<float>());
    const int64_t bad = cpu::ExchangeCombine(p);
    if (bad >= 0) {
      return absl::InternalError(absl::StrCat("ExchangeCombine: pair ", bad, " names row ",
                                              p.pair_dst[bad] / p.k, ", which did not arrive"));
    }
    return absl::OkStatus();
  }

 private:
  static absl::Status SameShape(const char* op, const char* operand, const Tensor& a,
                                const Tensor& b) {
    if (a.empty() || b.empty()) return OperandError(op, absl::StrCat(operand, " is empty"));
    if (a.dtype != b.dtype || a.numel() != b.numel()) {
      return OperandError(
          op, absl::StrCat(operand, ": expected ", DTypeName(a.dtype), " ", a.ShapeString(),
                           ", found ", DTypeName(b.dtype), " ", b.ShapeString()));
    }
    return absl::OkStatus();
  }

  // Writes count elements of `in` (from 0) as out's dtype at out element `at`.
  static void ConvertHost(const Tensor& in, const Tensor& out, int64_t at, int64_t count) {
    for (int64_t i = 0; i < count; ++i) {
      float f = 0.0f;
      int64_t v = 0;
      const bool integral = in.dtype == DType::kI32 || in.dtype == DType::kI64;
      switch (in.dtype) {
        case DType::kF32:
          f = in.as<const float>()[i];
          break;
        case DType::kBF16:
          f = Bf16ToFloat(in.as<const uint16_t>()[i]);
          break;
        case DType::kF16:
          f = F16ToFloat(in.as<const uint16_t>()[i]);
          break;
        case DType::kI32:
          v = in.as<const int32_t>()[i];
          break;
        case DType::kI64:
          v = in.as<const int64_t>()[i];
          break;
        default:  // quantized formats go through UploadMatrix
          break;
      }
      switch (out.dtype) {
        case DType::kF32:
          out.as<float>()[at + i] = integral ? static_cast<float>(v) : f;
          break;
        case DType::kBF16:
          if (in.dtype == DType::kBF16) {
            out.as<uint16_t>()[at + i] = in.as<const uint16_t>()[i];
          } else {
            out.as<uint16_t>()[at + i] = FloatToBf16(f);
          }
          break;
        case DType::kI32:
          out.as<int32_t>()[at + i] = integral ? static_cast<int32_t>(v) : static_cast<int32_t>(f);
          break;
        default:
          break;
      }
    }
  }

  static absl::Status DenseOnly(const char* op, const Weight& w) {
    if (w.format == WeightFormat::kDense) return absl::OkStatus();
    return OperandError(
        op, absl::StrCat("w: ", WeightFormatName(w.format),
                         " weights must be uploaded with UploadMatrix (dense on the CPU)"));
  }
  bool Emulates(const Weight& w) const {
    return options_.emulate_activation_quant && w.source != WeightFormat::kDense;
  }
  // x itself, or (emulating) its copy quantized as the GPU quantizes it.
  const float* ActivationFor(const Weight& w, const Tensor& x) {
    if (!Emulates(w)) return x.as<const float>();
    const int64_t cols = x.dim(x.rank - 1), rows = x.numel() / cols;
    act_quant_.assign(x.as<const float>(), x.as<const float>() + x.numel());
    for (int64_t r = 0; r < rows; ++r) {
      quant::QuantizeActivationRow(act_quant_.data() + r * cols, cols, w.pow2_act_scales);
    }
    return act_quant_.data();
  }

  CpuBackendOptions options_;
  std::vector<char> workspace_;  // per-op scratch, reused across calls
  sampling::Sampler sampler_;    // Sample's scratch
  std::vector<float> act_quant_;
};

}  // namespace

std::unique_ptr<Backend> CreateCpuBackend(const CpuBackendOptions& options) {
  return std::make_unique<CpuBackend>(options);
}

}  // namespace moegraph
