// Per-op decode timings of the CUDA backend at V4-Flash widths (hidden tag:
// run with `moegraph_cuda_tests "[bench]"`). Each figure is the median of many
// eager calls bracketed by CUDA events, next to its memory floor (bytes that
// must be read / 4.3 TB/s). Inputs are random, never zeros.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numeric>

#include "engine/backend/cuda/cuda_backend.h"
#include "tests/cuda/backend_pair.h"

namespace moegraph::cuda_test {
namespace {

constexpr double kBandwidth = 4.3e12;

// Uploads to the GPU only (benchmarks need no CPU twin).
struct GpuTensor {
  std::vector<Buffer> owner;
  Tensor t;
};
std::unique_ptr<GpuTensor> G(DType dtype, std::initializer_list<int64_t> shape, float std = 1.0f) {
  auto g = std::make_unique<GpuTensor>();
  g->t = Tensor(nullptr, dtype, shape);
  auto buf = Gpu().Allocate(g->t.bytes());
  REQUIRE(buf.ok());
  g->t.data = buf->data();
  g->owner.push_back(std::move(*buf));
  if (dtype == DType::kI32) return g;
  // Random fill through a f32 upload + Convert.
  const std::vector<float> v = RandomBf16(g->t.numel(), std);
  if (dtype == DType::kF32) {
    REQUIRE(Gpu().Upload(g->t.data, v.data(), v.size() * 4).ok());
  } else {
    auto tmp = Gpu().Allocate(v.size() * 4);
    REQUIRE(tmp.ok());
    Tensor f(tmp->data(), DType::kF32, {g->t.numel()});
    REQUIRE(Gpu().Upload(f.data, v.data(), v.size() * 4).ok());
    REQUIRE(Gpu().Convert(f, g->t.view({g->t.numel()})).ok());
    REQUIRE(Gpu().Synchronize().ok());
  }
  REQUIRE(Gpu().Synchronize().ok());
  return g;
}
std::unique_ptr<GpuTensor> GI(const std::vector<int32_t>& v, std::initializer_list<int64_t> shape) {
  auto g = G(DType::kI32, shape);
  REQUIRE(Gpu().Upload(g->t.data, v.data(), v.size() * 4).ok());
  REQUIRE(Gpu().Synchronize().ok());
  return g;
}

// Device time of one call, two ways: eager (the mean over back-to-back calls
// from the backend's per-op events, host launch costs included whenever the
// GPU outruns the host) and graph (the calls captured into a CUDA graph and
// replayed: kernel time without host costs).
struct Timing {
  double eager_us, graph_us;
};
Timing MedianUs(const std::function<absl::Status()>& op, int iters = 20, Backend& backend = Gpu()) {
  OpTimer* timer = CudaOpTimer(&backend);
  REQUIRE(timer != nullptr);
  for (int i = 0; i < 3; ++i) REQUIRE(op().ok());
  std::vector<double> us;
  for (int rep = 0; rep < 5; ++rep) {
    REQUIRE(timer->Enable(true).ok());
    for (int i = 0; i < iters; ++i) REQUIRE(op().ok());
    auto ms = timer->Collect();
    REQUIRE(ms.ok());
    us.push_back(std::accumulate(ms->begin(), ms->end(), 0.0) * 1e3 / iters);
  }
  REQUIRE(timer->Enable(false).ok());
  std::nth_element(us.begin(), us.begin() + us.size() / 2, us.end());
  REQUIRE(timer->BeginCapture().ok());
  for (int i = 0; i < iters; ++i) REQUIRE(op().ok());
  auto graph_ms = timer->EndCaptureAndTime(10);
  INFO(graph_ms.status().ToString());
  REQUIRE(graph_ms.ok());
  return {us[us.size() / 2], *graph_ms * 1e3 / iters};
}

// The floor is the larger of bytes / 4.3 TB/s and flops / 890 TFLOP/s (bf16
// dense; FP8 tensor cores peak at twice that).
void Row(const char* op, int batch, Timing t, double bytes, double flops = 0) {
  const double floor_us = std::max(bytes / kBandwidth, flops / 890e12) * 1e6;
  std::printf("OP-BENCH|%s|B=%d|eager %.1f us|graph %.1f us|floor %.1f us|graph %.1fx floor\n", op,
              batch, t.eager_us, t.graph_us, floor_us, t.graph_us / floor_us);
  std::fflush(stdout);
}

std::unique_ptr<MetaMirror> DecodeMeta(int batch, int pos) {
  std::vector<SeqSpec> seqs;
  for (int s = 0; s < batch; ++s) seqs.push_back({s, pos, 1});
  return MakeMeta(seqs);
}

TEST_CASE("OpBench", "[.bench]") {
  ReseedRng("OpBench");
  const int D = 4096, H = 64, d = 512, W = 128, nI = 64, c = 128, topk = 512;
  const int pos = 2099;  // 525 CSA entries visible, 16 HCA entries
  for (int B : {1, 8, 64}) {
    auto meta = DecodeMeta(B, pos);
    const StepMeta& m = meta->gpu;
    // Matrix products.
    {
      auto x = G(DType::kBF16, {B, 1024});
      auto w = G(DType::kBF16, {H * d, 1024}, 0.02f);
      auto y = G(DType::kBF16, {B, H * d});
      Row("Linear wq_b 1024->32768", B, MedianUs([&] { return Gpu().Linear(x->t, w->t, y->t); }),
          2.0 * H * d * 1024);
      auto o = G(DType::kBF16, {B, H * d});
      auto wo_a = G(DType::kBF16, {8 * 1024, H * d / 8}, 0.02f);
      auto z = G(DType::kBF16, {B, 8 * 1024});
      Row("GroupedLinear wo_a g8", B,
          MedianUs([&] { return Gpu().GroupedLinear(o->t, wo_a->t, 8, z->t); }),
          2.0 * 8 * 1024 * 4096);
      auto wo_b = G(DType::kBF16, {D, 8 * 1024}, 0.02f);
      auto out = G(DType::kBF16, {B, D});
      Row("Linear wo_b 8192->4096", B,
          MedianUs([&] { return Gpu().Linear(z->t, wo_b->t, out->t); }), 2.0 * D * 8192);
    }
    // Attention (CSA: window + 512 selected; HCA: window + 16 entries).
    {
      auto q = G(DType::kBF16, {B, H, d});
      auto kv = G(DType::kBF16, {B, d});
      auto ring = G(DType::kBF16, {B, W, d});
      auto sinks = G(DType::kF32, {H});
      const int per_slot_pages = 10;
      auto pool = G(DType::kBF16, {B * per_slot_pages, 64, 2, d});
      std::vector<int32_t> table(B * per_slot_pages);
      std::iota(table.begin(), table.end(), 0);
      auto tab = GI(table, {B, per_slot_pages});
      std::vector<int32_t> sel(B * topk);
      for (int i = 0; i < B * topk; ++i) sel[i] = static_cast<int32_t>(Rng()() % 525);
      auto selected = GI(sel, {B, topk});
      auto out = G(DType::kBF16, {B, H, d});
      AttentionParams p;
      p.window = W;
      p.scale = 1.0f / std::sqrt(float(d));
      p.sinks = sinks->t;
      p.window_ring = ring->t;
      p.entries = EntryPages{pool->t, tab->t, 64, 1};
      p.rate = 4;
      p.selected = selected->t;
      const double io = 2.0 * B * (2 * H * d);  // q in, out
      Row("Attention CSA 128+512 keys", B,
          MedianUs([&] { return Gpu().Attention(q->t, kv->t, p, m, out->t); }),
          io + 2.0 * B * (W + topk) * d);
      p.selected = Tensor();
      p.rate = 128;
      Row("Attention HCA 128+16 keys", B,
          MedianUs([&] { return Gpu().Attention(q->t, kv->t, p, m, out->t); }),
          io + 2.0 * B * (W + 16) * d);
    }
    // Indexer over 525 entries, top 512.
    {
      auto q = G(DType::kBF16, {B, nI, c});
      auto w = G(DType::kF32, {B, nI});
      auto pool = G(DType::kBF16, {B * 10, 64, 1, c});
      std::vector<int32_t> table(B * 10);
      std::iota(table.begin(), table.end(), 0);
      auto tab = GI(table, {B, 10});
      auto sel = G(DType::kI32, {B, topk});
      Row("IndexerTopK 525 entries top512", B, MedianUs([&] {
            return Gpu().IndexerTopK(q->t, w->t, EntryPages{pool->t, tab->t, 64, 0}, 4,
                                     1.0f / std::sqrt(float(c)), m, sel->t);
          }),
          2.0 * B * (525 * c + nI * c));
    }
    // Compressor (CSA main, width 512).
    {
      auto cz = G(DType::kBF16, {B, 2 * d});
      auto ape = G(DType::kF32, {4, 2 * d});
      auto norm = G(DType::kF32, {d});
      auto inv = G(DType::kF32, {32}, 0.01f);
      auto ring = G(DType::kBF16, {B, 8, 4 * d});
      auto pool = G(DType::kBF16, {B * 10, 64, 2, d});
      std::vector<int32_t> table(B * 10);
      std::iota(table.begin(), table.end(), 0);
      auto tab = GI(table, {B, 10});
      CompressorParams p;
      p.rate = 4;
      p.overlap = true;
      p.width = d;
      p.rope_dim = 64;
      p.ape = ape->t;
      p.norm_weight = norm->t;
      p.inv_freq = inv->t;
      p.ring = ring->t;
      p.entries = EntryPages{pool->t, tab->t, 64, 0};
      Row("CompressorUpdate CSA w512", B,
          MedianUs([&] { return Gpu().CompressorUpdate(cz->t, cz->t, p, m); }),
          2.0 * B * (8 * 4 * d));
    }
    // Hyper-connection pre site.
    {
      auto X = G(DType::kBF16, {B, 4, D});
      auto fn = G(DType::kF32, {24, 4 * D}, 0.01f);
      auto base = G(DType::kF32, {24});
      auto scale = G(DType::kF32, {3});
      auto x_in = G(DType::kBF16, {B, D});
      auto post = G(DType::kF32, {B, 4});
      auto comb = G(DType::kF32, {B, 4, 4});
      Row("HcPre n4", B, MedianUs([&] {
            return Gpu().HcPre(X->t, fn->t, base->t, scale->t, 20, 1e-6f, 1e-6f, x_in->t, post->t,
                               comb->t);
          }),
          4.0 * 24 * 4 * D + 2.0 * B * 4 * D);
      auto norm = G(DType::kF32, {D});
      auto h = G(DType::kBF16, {B, D});
      Row("HcPre n4 + RmsNorm", B, MedianUs([&] {
            absl::Status s = Gpu().HcPre(X->t, fn->t, base->t, scale->t, 20, 1e-6f, 1e-6f, x_in->t,
                                         post->t, comb->t);
            return s.ok() ? Gpu().RmsNorm(x_in->t, norm->t, 1e-6f, h->t) : s;
          }),
          4.0 * 24 * 4 * D + 2.0 * B * 4 * D + 4.0 * B * D);
      Row("HcPreNorm n4 (fused)", B, MedianUs([&] {
            return Gpu().HcPreNorm(X->t, fn->t, base->t, scale->t, 20, 1e-6f, 1e-6f, norm->t,
                                   x_in->t, post->t, comb->t, h->t);
          }),
          4.0 * 24 * 4 * D + 2.0 * B * 4 * D + 4.0 * B * D);
    }
  }
}

// One MoeExperts row: B tokens routed to 6 of E experts of width D; the
// bytes floor counts each distinct expert once (expert_bytes each).
void MoeRow(const char* name, int B, int E, int D, const ExpertWeights& experts,
            double expert_bytes) {
  auto x = G(DType::kBF16, {B, D});
  const std::vector<int32_t> idx = RandomRouting(B, E, 6);
  std::vector<bool> used(E, false);
  for (int32_t e : idx) used[e] = true;
  const int distinct = static_cast<int>(std::count(used.begin(), used.end(), true));
  auto im = GI(idx, {B, 6});
  auto wm = G(DType::kF32, {B, 6});
  auto out = G(DType::kBF16, {B, D});
  Row(name, B,
      MedianUs([&] { return Gpu().MoeExperts(x->t, im->t, wm->t, experts, 10.0f, out->t); }),
      distinct * expert_bytes);
}

TEST_CASE("OpBenchMoe", "[.bench][moe]") {
  ReseedRng("OpBenchMoe");
  const int D = 4096, E = 32, F = 2048;
  auto w1 = G(DType::kBF16, {E, F, D}, 0.02f);
  auto w3 = G(DType::kBF16, {E, F, D}, 0.02f);
  auto w2 = G(DType::kBF16, {E, D, F}, 0.02f);
  for (int B : {1, 8, 64, 512})  // routed experts: 32 experts, top 6
    MoeRow("MoeExperts E32 top6 D4096 F2048", B, E, D, ExpertWeights{w1->t, w2->t, w3->t},
           2.0 * 3.0 * F * D);
}

// Random FP8 (E8M0 block scales) or FP4 matrices [E, n, k] on the GPU only.
struct GpuWeight {
  std::vector<Buffer> owner;
  Weight w;
};
std::unique_ptr<GpuWeight> GQ(WeightFormat fmt, int64_t experts, int64_t n, int64_t k) {
  auto g = std::make_unique<GpuWeight>();
  const int64_t data_bytes = fmt == WeightFormat::kFp8 ? n * k : n * k / 2;
  const int64_t scale_bytes =
      fmt == WeightFormat::kFp8 ? ((n + 127) / 128) * ((k + 127) / 128) : n * (k / 32);
  std::vector<std::vector<uint8_t>> data(experts), scale(experts);
  std::vector<HostWeight> host;
  for (int64_t e = 0; e < experts; ++e) {
    data[e].resize(data_bytes);
    for (auto& b : data[e]) b = static_cast<uint8_t>(Rng()() & 0x77);  // finite codes
    scale[e].assign(scale_bytes, 120);
    HostWeight h;
    h.format = fmt;
    h.rows = n;
    h.cols = k;
    h.data = fmt == WeightFormat::kFp8 ? Tensor(data[e].data(), DType::kF8E4M3, {n, k})
                                       : Tensor(data[e].data(), DType::kU8, {n, k / 2});
    h.scale = fmt == WeightFormat::kFp8
                  ? Tensor(scale[e].data(), DType::kE8M0, {(n + 127) / 128, (k + 127) / 128})
                  : Tensor(scale[e].data(), DType::kE8M0, {n, k / 32});
    host.push_back(h);
  }
  auto w = experts == 1 ? Gpu().UploadMatrix(host[0], &g->owner)
                        : Gpu().UploadStackedMatrices(host, &g->owner);
  REQUIRE(w.ok());
  g->w = *w;
  return g;
}

// The released format's products next to bf16 ones of the same shapes (the
// FP8 linears' floor: 1 byte a weight plus scales; FP4 experts: 0.5 + 1/32).
TEST_CASE("OpBenchQuant", "[.bench][quant]") {
  ReseedRng("OpBenchQuant");
  struct Shape {
    const char* name;
    int n, k;
  };
  // Decode and prefill rows: bf16 (cuBLASLt), W8A16 (our kernel) and W8A8
  // (activations quantized, cuBLASLt's block-scaled FP8), to choose
  // w8a8_min_rows.
  for (int B : {1, 8, 16, 64, 128, 256, 512, 1024, 2048}) {
    for (Shape sh : {Shape{"wq_a 4096->1024", 1024, 4096}, Shape{"wq_b 1024->32768", 32768, 1024},
                     Shape{"wo_b 8192->4096", 4096, 8192}}) {
      auto x = G(DType::kBF16, {B, sh.k});
      auto y = G(DType::kBF16, {B, sh.n});
      auto wb = G(DType::kBF16, {sh.n, sh.k}, 0.02f);
      auto w8 = GQ(WeightFormat::kFp8, 1, sh.n, sh.k);
      const double flops = 2.0 * B * sh.n * sh.k;
      const double act = 2.0 * B * (sh.k + sh.n);
      const double fp8 = 1.0 * sh.n * sh.k + 4.0 * sh.n * sh.k / (128 * 128) + act;
      Row((std::string("Linear bf16 ") + sh.name).c_str(), B,
          MedianUs([&] { return Gpu().Linear(x->t, wb->t, y->t); }), 2.0 * sh.n * sh.k + act,
          flops);
      Row((std::string("Linear fp8 ") + sh.name).c_str(), B,
          MedianUs([&] { return Gpu().Linear(x->t, w8->w, y->t); }), fp8, flops);
      Row((std::string("Linear fp8 W8A8 ") + sh.name).c_str(), B,
          MedianUs([&] { return GpuW8A8().Linear(x->t, w8->w, y->t); }, 20, GpuW8A8()), fp8, flops);
    }
  }
  const int D = 4096, E = 32, F = 2048;
  for (WeightFormat fmt : {WeightFormat::kFp4, WeightFormat::kFp8}) {
    auto w1 = GQ(fmt, E, F, D), w3 = GQ(fmt, E, F, D);
    auto w2 = GQ(fmt, E, D, F);
    const bool fp4 = fmt == WeightFormat::kFp4;
    for (int B : {1, 8, 64})
      MoeRow(fp4 ? "MoeExperts fp4 E32 top6 D4096 F2048" : "MoeExperts fp8 E32 top6 D4096 F2048", B,
             E, D, ExpertWeights{w1->w, w2->w, w3->w},
             3.0 * F * D * (fp4 ? 0.5 + 1.0 / 32 : 1.0 + 4.0 / (128 * 128)));
  }
  // The grouped output projection (8 groups of 4096 -> 1024, one launch),
  // after the experts so that their routing draws what it always drew.
  for (int B : {1, 8, 64}) {
    auto o = G(DType::kBF16, {B, 8 * 4096});
    auto z = G(DType::kBF16, {B, 8 * 1024});
    auto w8 = GQ(WeightFormat::kFp8, 1, 8 * 1024, 4096);
    Row("GroupedLinear fp8 wo_a g8", B,
        MedianUs([&] { return Gpu().GroupedLinear(o->t, w8->w, 8, z->t); }),
        8.0 * 1024 * 4096 * (1.0 + 4.0 / (128 * 128)) + 2.0 * B * 8 * (4096 + 1024),
        2.0 * B * 8 * 1024 * 4096);
  }
}

// One call of each small-batch product, for a profiler (not timed):
//   ncu -k regex:Gemv -c 6 moegraph_cuda_tests "[profile]"
// profiles the FP4 experts' two kernels at batch 1 and 8, then FP8 linears
// 1024->32768 and 8192->4096 at one row.
TEST_CASE("ProfileGemv", "[.bench][profile]") {
  ReseedRng("ProfileGemv");
  const int D = 4096, E = 32, F = 2048;
  auto w1 = GQ(WeightFormat::kFp4, E, F, D), w3 = GQ(WeightFormat::kFp4, E, F, D);
  auto w2 = GQ(WeightFormat::kFp4, E, D, F);
  const ExpertWeights experts{w1->w, w2->w, w3->w};
  for (int B : {1, 8}) {
    auto x = G(DType::kBF16, {B, D});
    const std::vector<int32_t> idx = RandomRouting(B, E, 6);
    auto im = GI(idx, {B, 6});
    auto wm = G(DType::kF32, {B, 6}, 0.5f);
    auto out = G(DType::kBF16, {B, D});
    REQUIRE(Gpu().MoeExperts(x->t, im->t, wm->t, experts, 10.0f, out->t).ok());
  }
  for (auto [n, k] : {std::pair{32768, 1024}, std::pair{4096, 8192}}) {
    auto x = G(DType::kBF16, {1, k});
    auto y = G(DType::kBF16, {1, n});
    auto w8 = GQ(WeightFormat::kFp8, 1, n, k);
    REQUIRE(Gpu().Linear(x->t, w8->w, y->t).ok());
  }
  REQUIRE(Gpu().Synchronize().ok());
}

}  // namespace
}  // namespace moegraph::cuda_test
