// [cuda] FP8/FP4 weights: the GPU's dequantize-in-the-loop GEMMs against the
// CPU, which dequantizes at load (exact). Random codes and a different scale
// per block, at the tiny fixture's and V4-Flash's widths, so that a block or
// nibble taken from the wrong place shows.
#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>

#include "tests/cuda/backend_pair.h"

namespace moegraph::cuda_test {
namespace {

struct HostMatrix {
  std::vector<uint8_t> data, scale_bytes;
  std::vector<float> scale_f32;
  HostWeight view;
};

// Random codes (no NaN) and scales near 2^-7 (fp8) or 2^-5 (fp4) per block.
std::unique_ptr<HostMatrix> RandomMatrix(WeightFormat fmt, int64_t n, int64_t k, bool f32_scales) {
  auto m = std::make_unique<HostMatrix>();
  std::uniform_int_distribution<int> byte(0, 255), jitter(-2, 2);
  HostWeight& h = m->view;
  h.format = fmt;
  h.rows = n;
  h.cols = k;
  if (fmt == WeightFormat::kFp8) {
    m->data.resize(n * k);
    for (auto& b : m->data) {
      b = static_cast<uint8_t>(byte(Rng()));
      if ((b & 0x7F) == 0x7F) b = 0;
    }
    const int64_t nb = (n + 127) / 128, kb = (k + 127) / 128;
    if (f32_scales) {
      std::uniform_real_distribution<float> u(0.002f, 0.02f);
      for (int64_t i = 0; i < nb * kb; ++i) m->scale_f32.push_back(u(Rng()));
      h.scale = Tensor(m->scale_f32.data(), DType::kF32, {nb, kb});
    } else {
      for (int64_t i = 0; i < nb * kb; ++i) m->scale_bytes.push_back(127 - 9 + jitter(Rng()));
      h.scale = Tensor(m->scale_bytes.data(), DType::kE8M0, {nb, kb});
    }
    h.data = Tensor(m->data.data(), DType::kF8E4M3, {n, k});
  } else {
    m->data.resize(n * k / 2);
    for (auto& b : m->data) b = static_cast<uint8_t>(byte(Rng()));
    for (int64_t i = 0; i < n * k / 32; ++i) m->scale_bytes.push_back(127 - 5 + jitter(Rng()));
    h.data = Tensor(m->data.data(), DType::kU8, {n, k / 2});
    h.scale = Tensor(m->scale_bytes.data(), DType::kE8M0, {n, k / 32});
  }
  return m;
}

struct WeightPair {
  Weight cpu, gpu;
  std::vector<Buffer> owner_cpu, owner_gpu;
};

std::unique_ptr<WeightPair> Upload(const std::vector<const HostWeight*>& host) {
  auto p = std::make_unique<WeightPair>();
  if (host.size() == 1) {
    p->cpu = Cpu().UploadMatrix(*host[0], &p->owner_cpu).value();
    p->gpu = Gpu().UploadMatrix(*host[0], &p->owner_gpu).value();
  } else {
    std::vector<HostWeight> v;
    for (const HostWeight* h : host) v.push_back(*h);
    p->cpu = Cpu().UploadStackedMatrices(v, &p->owner_cpu).value();
    p->gpu = Gpu().UploadStackedMatrices(v, &p->owner_gpu).value();
  }
  return p;
}

std::string Name(WeightFormat f, bool f32_scales) {
  return f == WeightFormat::kFp4 ? "fp4" : f32_scales ? "fp8/f32-scales" : "fp8";
}

TEST_CASE("Linear over FP8 and FP4 weights", "[cuda]") {
  ReseedRng("QuantLinear");
  struct Case {
    int R, K, N;
    WeightFormat fmt;
    bool f32_scales;
    Kind out;
  };
  const auto kFp8 = WeightFormat::kFp8, kFp4 = WeightFormat::kFp4;
  for (Case c :
       {Case{5, 64, 48, kFp8, false, Kind::kAct}, Case{7, 64, 32, kFp4, false, Kind::kAct},
        Case{1, 4096, 1024, kFp8, false, Kind::kAct}, Case{8, 1024, 32768, kFp8, false, Kind::kAct},
        Case{64, 4096, 4096, kFp8, true, Kind::kAct}, Case{300, 4096, 512, kFp8, false, Kind::kAct},
        Case{3, 4096, 2048, kFp4, false, Kind::kF32}, Case{64, 2048, 4096, kFp4, false, Kind::kAct},
        Case{130, 272, 200, kFp8, false, Kind::kAct}, Case{33, 1024, 512, kFp8, false, Kind::kAct},
        // 1-4 rows run on the CUDA cores: outputs past a 16-wide block,
        // fewer chunks than slices, uneven and no depth splits.
        Case{2, 192, 40, kFp8, false, Kind::kAct}, Case{4, 8192, 4096, kFp8, true, Kind::kF32},
        Case{1, 1024, 32768, kFp8, false, Kind::kAct},
        Case{2, 4096, 1032, kFp4, false, Kind::kAct}}) {
    auto hw = RandomMatrix(c.fmt, c.N, c.K, c.f32_scales);
    auto w = Upload({&hw->view});
    auto x = Make(Kind::kAct, RandomBf16(int64_t{c.R} * c.K, 1.0f), {c.R, c.K});
    auto y = MakeOut(c.out, {c.R, c.N});
    REQUIRE(Cpu().Linear(x->cpu, w->cpu, y->cpu).ok());
    absl::Status s = Gpu().Linear(x->gpu, w->gpu, y->gpu);
    INFO(s.ToString());
    REQUIRE(s.ok());
    CompareOut("Linear " + Name(c.fmt, c.f32_scales),
               std::to_string(c.R) + "x" + std::to_string(c.K) + "x" + std::to_string(c.N), *y);
  }
}

// All groups run in one launch: on the CUDA cores (1-4 rows, with and without
// depth splits), and tiled (one and several row tiles a group).
TEST_CASE("GroupedLinear over FP8 and FP4 weights", "[cuda]") {
  ReseedRng("QuantGroupedLinear");
  const auto kFp8 = WeightFormat::kFp8, kFp4 = WeightFormat::kFp4;
  for (auto [R, g, Kg, Ng, fmt] :
       {std::tuple{3, 2, 64, 128, kFp8}, std::tuple{1, 8, 4096, 1024, kFp8},
        std::tuple{64, 8, 4096, 1024, kFp8}, std::tuple{130, 2, 256, 128, kFp8},
        std::tuple{2, 4, 512, 64, kFp4}, std::tuple{20, 3, 128, 96, kFp4},
        std::tuple{1, 8, 4096, 1024, kFp4}}) {
    auto hw = RandomMatrix(fmt, int64_t{g} * Ng, Kg, false);
    auto w = Upload({&hw->view});
    auto x = Make(Kind::kAct, RandomBf16(int64_t{R} * g * Kg, 1.0f), {R, g * Kg});
    auto y = MakeOut(Kind::kAct, {R, g * Ng});
    REQUIRE(Cpu().GroupedLinear(x->cpu, w->cpu, g, y->cpu).ok());
    REQUIRE(Gpu().GroupedLinear(x->gpu, w->gpu, g, y->gpu).ok());
    CompareOut(std::string("GroupedLinear ") + Name(fmt, false),
               std::to_string(R) + "x" + std::to_string(g) + "x" + std::to_string(Kg) + "x" +
                   std::to_string(Ng),
               *y);
  }
}

// W8A8 (activations quantized to e4m3 in 1x128 groups, cuBLASLt's
// block-scaled FP8 GEMM) against the CPU emulating that quantization; the
// distance to the unquantized product shows the path really quantizes. Only
// whole multiples of 16 rows run W8A8 (kFp8BlockScaledRows): the rows left
// over, and products of fewer rows, match the unquantized activations.
TEST_CASE("Linear and GroupedLinear over FP8 weights, W8A8", "[cuda]") {
  ReseedRng("QuantW8A8");
  struct Case {
    int R, K, N, groups;
    bool pow2, f32_scales;
    Kind out;
  };
  for (Case c : {Case{1, 4096, 1024, 1, true, false, Kind::kAct},
                 Case{8, 1024, 32768, 1, true, false, Kind::kAct},
                 Case{64, 4096, 4096, 1, false, true, Kind::kAct},
                 Case{300, 4096, 512, 1, true, false, Kind::kF32},
                 Case{2048, 4096, 1024, 1, true, false, Kind::kAct},
                 Case{64, 4096, 1024, 8, true, false, Kind::kAct},
                 Case{21, 4096, 1024, 8, true, false, Kind::kAct}}) {
    auto hw = RandomMatrix(WeightFormat::kFp8, int64_t{c.groups} * c.N, c.K, c.f32_scales);
    hw->view.pow2_act_scales = c.pow2;
    auto w = Upload({&hw->view});
    const int64_t width = int64_t{c.groups} * c.K, cols = int64_t{c.groups} * c.N;
    auto x = Make(Kind::kAct, RandomBf16(c.R * width, 1.0f), {c.R, width});
    auto y = MakeOut(c.out, {c.R, cols});
    auto exact = MakeOut(c.out, {c.R, cols});
    auto run = [&](Backend& b, const Tensor& xt, const Weight& wt, Tensor yt) {
      return c.groups == 1 ? b.Linear(xt, wt, yt) : b.GroupedLinear(xt, wt, c.groups, yt);
    };
    REQUIRE(run(CpuEmulatingW8A8(), x->cpu, w->cpu, y->cpu).ok());
    REQUIRE(run(Cpu(), x->cpu, w->cpu, exact->cpu).ok());
    absl::Status s = run(GpuW8A8(), x->gpu, w->gpu, y->gpu);
    INFO(s.ToString());
    REQUIRE(s.ok());
    REQUIRE(GpuW8A8().Synchronize().ok());
    const std::string what = std::to_string(c.R) + "x" + std::to_string(c.K) + "x" +
                             std::to_string(c.N) + (c.groups > 1 ? " g8" : "") +
                             (c.pow2 ? " pow2" : "");
    const std::vector<float> got = Fetch(Gpu(), y->gpu), emulated = Fetch(Cpu(), y->cpu),
                             unquantized = Fetch(Cpu(), exact->cpu);
    const int64_t split = (c.R - c.R % 16) * cols;  // W8A8 rows, then W8A16
    auto part = [](const std::vector<float>& v, int64_t begin, int64_t end) {
      return std::vector<float>(v.begin() + begin, v.begin() + end);
    };
    const int64_t all = static_cast<int64_t>(got.size());
    if (split > 0) {
      const std::vector<float> head = part(got, 0, split);
      ExpectClose("Linear fp8 W8A8 vs emulation", what, head, part(emulated, 0, split), 1e-2);
      const double off = RelErr(head, part(unquantized, 0, split));
      Report("Linear fp8 W8A8 vs unquantized activations", what, off, 1e-2, off > 1e-2);
      CHECK(off > 1e-2);
    }
    if (split < all) {
      ExpectClose("Linear fp8 W8A8 product's W8A16 rows", what, part(got, split, all),
                  part(unquantized, split, all), 1e-2);
    }
  }
}

TEST_CASE("MoeExperts over FP4 and FP8 experts", "[cuda]") {
  ReseedRng("QuantMoe");
  struct Case {
    int T, E, k, D, F;
    WeightFormat fmt;
  };
  for (Case c :
       {Case{7, 8, 2, 64, 32, WeightFormat::kFp4}, Case{7, 8, 2, 64, 32, WeightFormat::kFp8},
        Case{1, 16, 6, 4096, 2048, WeightFormat::kFp4},
        Case{1, 16, 6, 4096, 2048, WeightFormat::kFp8},
        // Few rows an expert (the small-batch path): 1-5 rows, tiles of <= 4;
        // 2 tokens instantiate the kernel of at most 2 rows a tile, 3 that of 4.
        Case{5, 16, 6, 256, 192, WeightFormat::kFp4}, Case{5, 16, 6, 256, 192, WeightFormat::kFp8},
        Case{2, 8, 3, 512, 256, WeightFormat::kFp4}, Case{2, 8, 3, 512, 256, WeightFormat::kFp8},
        Case{3, 8, 4, 256, 128, WeightFormat::kFp4}, Case{8, 32, 6, 4096, 2048, WeightFormat::kFp4},
        Case{64, 16, 6, 4096, 2048, WeightFormat::kFp4},
        Case{200, 16, 6, 4096, 2048, WeightFormat::kFp8}}) {
    std::vector<std::unique_ptr<HostMatrix>> mats;
    std::vector<const HostWeight*> w1, w2, w3;
    for (int e = 0; e < c.E; ++e) {
      for (auto [list, n, kk] :
           {std::tuple{&w1, c.F, c.D}, std::tuple{&w3, c.F, c.D}, std::tuple{&w2, c.D, c.F}}) {
        mats.push_back(RandomMatrix(c.fmt, n, kk, false));
        list->push_back(&mats.back()->view);
      }
    }
    auto u1 = Upload(w1), u2 = Upload(w2), u3 = Upload(w3);
    auto x = Make(Kind::kAct, RandomBf16(int64_t{c.T} * c.D, 1.0f), {c.T, c.D});
    const std::vector<int32_t> idx = RandomRouting(c.T, c.E, c.k);
    auto im = MakeI32(idx, {c.T, c.k});
    auto wm = Make(Kind::kF32, RandomUniformBf16(int64_t{c.T} * c.k, 0.1f, 1.0f), {c.T, c.k});
    auto out = MakeOut(Kind::kAct, {c.T, c.D});
    const ExpertWeights ec{u1->cpu, u2->cpu, u3->cpu}, eg{u1->gpu, u2->gpu, u3->gpu};
    REQUIRE(Cpu().MoeExperts(x->cpu, im->cpu, wm->cpu, ec, 10.0f, out->cpu).ok());
    absl::Status s = Gpu().MoeExperts(x->gpu, im->gpu, wm->gpu, eg, 10.0f, out->gpu);
    INFO(s.ToString());
    REQUIRE(s.ok());
    CompareOut(std::string("MoeExperts ") + (c.fmt == WeightFormat::kFp4 ? "fp4" : "fp8"),
               "T" + std::to_string(c.T) + " D" + std::to_string(c.D), *out);
  }
}

}  // namespace
}  // namespace moegraph::cuda_test
