// [cuda] MoE ops vs the CPU backend: routing (sqrt-softplus top-k with bias,
// hash routing through tid2eid) and the routed experts (grouping, clamped
// SwiGLU, weighted sum), at tiny and V4-Flash widths.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>

#include "tests/cuda/backend_pair.h"

namespace moegraph::cuda_test {
namespace {

TEST_CASE("Route", "[cuda]") {
  ReseedRng("Route");
  for (auto [T, E, k] : {std::tuple{7, 8, 2}, std::tuple{64, 32, 6}, std::tuple{300, 256, 6}}) {
    const std::string shape =
        std::to_string(T) + "x" + std::to_string(E) + " top" + std::to_string(k);
    auto logits = Make(Kind::kF32, RandomBf16(int64_t{T} * E, 3.0f), {T, E});
    auto bias = Make(Kind::kF32, RandomBf16(E, 0.1f), {E});
    const int V = 100;
    std::vector<int32_t> tid2eid(int64_t{V} * k), ids(T);
    for (int v = 0; v < V; ++v) {
      std::vector<int32_t> perm(E);
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), Rng());
      std::copy(perm.begin(), perm.begin() + k, tid2eid.begin() + int64_t{v} * k);
    }
    for (int& id : ids) id = static_cast<int>(Rng()() % V);
    auto tid = MakeI32(tid2eid, {V, k});
    auto tok = MakeI32(ids, {T});
    for (bool hash : {false, true}) {
      auto idx = MakeOut(Kind::kI32, {T, k});
      auto w = MakeOut(Kind::kF32, {T, k});
      REQUIRE(Cpu()
                  .Route(logits->cpu, hash ? Tensor() : bias->cpu, hash ? tid->cpu : Tensor(),
                         tok->cpu, 1.5f, idx->cpu, w->cpu)
                  .ok());
      REQUIRE(Gpu()
                  .Route(logits->gpu, hash ? Tensor() : bias->gpu, hash ? tid->gpu : Tensor(),
                         tok->gpu, 1.5f, idx->gpu, w->gpu)
                  .ok());
      CompareOut("Route", shape + (hash ? " hash idx" : " topk idx"), *idx, 0.0);
      CompareOut("Route", shape + (hash ? " hash w" : " topk w"), *w, 1e-5);
    }
  }
}

TEST_CASE("MoeExperts", "[cuda]") {
  ReseedRng("MoeExperts");
  struct Case {
    int T, E, k, D, F;
    float limit;
  };
  for (Case c : {Case{7, 8, 2, 64, 32, 1.0f}, Case{1, 16, 6, 4096, 2048, 10.0f},
                 Case{8, 16, 6, 4096, 2048, 10.0f}, Case{64, 16, 6, 4096, 2048, 10.0f},
                 // Few rows an expert (1-5): bf16 experts stay on the tiled path.
                 Case{3, 16, 6, 320, 224, 10.0f}, Case{5, 16, 6, 256, 192, 10.0f},
                 Case{200, 16, 6, 4096, 2048, 10.0f}}) {
    const std::string shape = "T" + std::to_string(c.T) + " E" + std::to_string(c.E) + " k" +
                              std::to_string(c.k) + " D" + std::to_string(c.D) + " F" +
                              std::to_string(c.F);
    const float wstd = 1.0f / std::sqrt(float(c.D));
    auto w1 =
        Make(Kind::kMatrix, RandomBf16(int64_t{c.E} * c.F * c.D, 2.0f * wstd), {c.E, c.F, c.D});
    auto w3 =
        Make(Kind::kMatrix, RandomBf16(int64_t{c.E} * c.F * c.D, 2.0f * wstd), {c.E, c.F, c.D});
    auto w2 =
        Make(Kind::kMatrix, RandomBf16(int64_t{c.E} * c.D * c.F, 1.0f / std::sqrt(float(c.F))),
             {c.E, c.D, c.F});
    auto x = Make(Kind::kAct, RandomBf16(int64_t{c.T} * c.D, 1.0f), {c.T, c.D});
    const std::vector<int32_t> idx = RandomRouting(c.T, c.E, c.k);
    auto im = MakeI32(idx, {c.T, c.k});
    auto wm = Make(Kind::kF32, RandomUniformBf16(int64_t{c.T} * c.k, 0.1f, 1.0f), {c.T, c.k});
    auto out = MakeOut(Kind::kAct, {c.T, c.D});
    const ExpertWeights ec{w1->cpu, w2->cpu, w3->cpu}, eg{w1->gpu, w2->gpu, w3->gpu};
    REQUIRE(Cpu().MoeExperts(x->cpu, im->cpu, wm->cpu, ec, c.limit, out->cpu).ok());
    REQUIRE(Gpu().MoeExperts(x->gpu, im->gpu, wm->gpu, eg, c.limit, out->gpu).ok());
    CompareOut("MoeExperts", shape, *out);
  }
}

// Expert parallelism's two MoE halves against the CPU backend: the experts of
// one rank over rows dispatched from several sources (rows past a source's
// count and choices held elsewhere skipped; outputs unweighted, one per pair,
// matched by pair_dst since the order within an expert is free), and the
// weighted sum on the token's own rank.
TEST_CASE("MoeExpertPairs and MoeWeightedSum", "[cuda]") {
  ReseedRng("MoeExpertPairs");
  struct Case {
    int sources, capacity, local, first, k, D, F;
  };
  for (Case c : {Case{2, 5, 4, 4, 2, 64, 32}, Case{4, 16, 8, 8, 6, 4096, 2048},
                 Case{3, 40, 16, 0, 6, 512, 256}}) {
    const std::string shape = std::to_string(c.sources) + "x" + std::to_string(c.capacity) +
                              " local " + std::to_string(c.local) + " k" + std::to_string(c.k) +
                              " D" + std::to_string(c.D);
    const int N = c.sources * c.capacity, E = c.first + c.local + 4;
    const float wstd = 1.0f / std::sqrt(float(c.D));
    auto w1 = Make(Kind::kMatrix, RandomBf16(int64_t{c.local} * c.F * c.D, 2.0f * wstd),
                   {c.local, c.F, c.D});
    auto w3 = Make(Kind::kMatrix, RandomBf16(int64_t{c.local} * c.F * c.D, 2.0f * wstd),
                   {c.local, c.F, c.D});
    auto w2 =
        Make(Kind::kMatrix, RandomBf16(int64_t{c.local} * c.D * c.F, 1.0f / std::sqrt(float(c.F))),
             {c.local, c.D, c.F});
    auto x = Make(Kind::kAct, RandomBf16(int64_t{N} * c.D, 1.0f), {N, c.D});
    std::vector<int32_t> experts = RandomRouting(N, E, c.k);
    for (int32_t& e : experts) {
      if (e < c.first || e >= c.first + c.local) e = -1;
    }
    std::vector<int32_t> counts(c.sources);
    for (int32_t& n : counts) n = static_cast<int32_t>(Rng()() % (c.capacity + 1));
    counts[0] = c.capacity;  // one full source
    auto ex = MakeI32(experts, {N, c.k});
    auto cn = MakeI32(counts, {c.sources});
    const int P = N * c.k;
    auto out = MakeOut(Kind::kAct, {P, c.D});
    auto dst = MakeOut(Kind::kI32, {P});
    auto cnt = MakeOut(Kind::kI32, {1});
    const ExpertWeights ec{w1->cpu, w2->cpu, w3->cpu}, eg{w1->gpu, w2->gpu, w3->gpu};
    REQUIRE(Cpu()
                .MoeExpertPairs(x->cpu, ex->cpu, cn->cpu, c.first, ec, 10.0f, out->cpu, dst->cpu,
                                cnt->cpu)
                .ok());
    absl::Status st = Gpu().MoeExpertPairs(x->gpu, ex->gpu, cn->gpu, c.first, eg, 10.0f, out->gpu,
                                           dst->gpu, cnt->gpu);
    INFO(st.ToString());
    REQUIRE(st.ok());
    const int pairs = FetchI32(Cpu(), cnt->cpu)[0];
    CHECK(pairs > 0);
    REQUIRE(FetchI32(Gpu(), cnt->gpu)[0] == pairs);
    // Both outputs in pair_dst order.
    auto by_dst = [&](Backend& b, const Mirror& o, const Mirror& d, bool gpu) {
      const std::vector<float> rows = Fetch(b, gpu ? o.gpu : o.cpu);
      const std::vector<int32_t> where = FetchI32(b, gpu ? d.gpu : d.cpu);
      std::vector<std::pair<int32_t, int>> order;
      for (int i = 0; i < pairs; ++i) order.push_back({where[i], i});
      std::sort(order.begin(), order.end());
      std::vector<float> sorted;
      std::vector<int32_t> keys;
      for (auto [key, i] : order) {
        keys.push_back(key);
        sorted.insert(sorted.end(), rows.begin() + int64_t{i} * c.D,
                      rows.begin() + int64_t{i + 1} * c.D);
      }
      return std::pair{keys, sorted};
    };
    const auto [cpu_keys, cpu_rows] = by_dst(Cpu(), *out, *dst, false);
    const auto [gpu_keys, gpu_rows] = by_dst(Gpu(), *out, *dst, true);
    CHECK(gpu_keys == cpu_keys);
    ExpectClose("MoeExpertPairs", shape, gpu_rows, cpu_rows);

    // The token's own rank: every choice's output, weighted in expert order.
    const int T = c.capacity;
    auto y = Make(Kind::kAct, RandomBf16(int64_t{T} * c.k * c.D, 1.0f), {T, c.k, c.D});
    auto idx = MakeI32(RandomRouting(T, E, c.k), {T, c.k});
    auto w = Make(Kind::kF32, RandomUniformBf16(int64_t{T} * c.k, 0.1f, 1.0f), {T, c.k});
    auto sum = MakeOut(Kind::kAct, {T, c.D});
    REQUIRE(Cpu().MoeWeightedSum(y->cpu, idx->cpu, w->cpu, sum->cpu).ok());
    REQUIRE(Gpu().MoeWeightedSum(y->gpu, idx->gpu, w->gpu, sum->gpu).ok());
    CompareOut("MoeWeightedSum", shape, *sum);
  }
}

}  // namespace
}  // namespace moegraph::cuda_test
