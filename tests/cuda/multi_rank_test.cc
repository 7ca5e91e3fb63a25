// [cuda] several ranks on one GPU (docs/expert-parallel.md): two and four
// CUDA backends sharing the device, their expert exchange and layer handoff
// on device memory, give the single-rank engine's greedy tokens over the
// multi-rank scenario (requests joining and leaving, a chunked prefill, idle
// ranks), under ep, layers and ep+layers; and the exchange ops move exactly
// what the CPU ops move.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "engine/backend/backend_factory.h"
#include "engine/parallel/multi_rank_engine.h"
#include "tests/common/rank_scenario.h"

namespace moegraph::cuda_test {
namespace {

using moegraph::testing::LoadPrompts;
using moegraph::testing::MaxRel;
using moegraph::testing::Prompts;
using moegraph::testing::Trace;

std::string Repeat(const std::string& device, int n) {
  std::string out = device;
  for (int i = 1; i < n; ++i) out += "," + device;
  return out;
}

}  // namespace

TEST_CASE("CUDA ranks sharing one GPU give the single-rank tokens: ep, layers, ep+layers",
          "[cuda][ep]") {
  for (const char* name : {"dsv4-tiny", "dsv4-topk2", "dsv4-shape", "dsv4-tiny-fp4"}) {
    const Prompts prompts = LoadPrompts(name);
    EngineOptions base = moegraph::testing::Options(prompts.dir, prompts.max_tokens);
    base.device = "cuda";
    base.graphs = "off";
    auto single = Dsv4Engine::Create(base);
    INFO(name << ": " << single.status().ToString());
    REQUIRE(single.ok());
    const Trace ref = moegraph::testing::Run(**single, prompts.a, prompts.b, 0, 5, 2);
    for (auto [ranks, layout, blocks] :
         {std::tuple{2, "ep", 0}, std::tuple{4, "ep", 0}, std::tuple{2, "layers", 0},
          std::tuple{4, "ep+layers", 2}}) {
      EngineOptions o = base;
      o.devices = Repeat("cuda:0", ranks);
      o.layout = layout;
      o.layer_blocks = blocks;
      o.graphs = "auto";
      auto engine = Engine::Create(o);
      INFO(name << " on " << ranks << " CUDA ranks, " << layout << ": "
                << engine.status().ToString());
      REQUIRE(engine.ok());
      auto* multi = dynamic_cast<MultiRankEngine*>(engine->get());
      REQUIRE(multi != nullptr);
      CHECK((*engine)->info().layout.find("devices (in-process CUDA ranks)") != std::string::npos);
      const Trace got = moegraph::testing::Run(*multi, prompts.a, prompts.b, 0, 5, 2);
      const double rel = MaxRel(got, ref);
      std::printf("multi-rank cuda: %-14s %d ranks %-9s max relative logits difference %.3g\n",
                  name, ranks, layout, rel);
      // Different per-rank batches take other GEMM shapes (bf16 rounding),
      // nothing else: the same greedy tokens, logits within bf16 noise.
      CHECK(got.tokens == ref.tokens);
      CHECK(rel <= 2e-2);
    }
  }
}

TEST_CASE("CUDA exchange ops move what the CPU ops move", "[cuda][ep]") {
  // 3 ranks' dispatch from one source of T tokens (k = 3 of E = 9 experts),
  // then a combine of every received pair back to the source.
  const int R = 3, E = 9, K = 3, D = 40, T = 37, cap = 48;
  std::mt19937 rng(11);
  std::vector<int32_t> owner(E), idx(T * K);
  for (int e = 0; e < E; ++e) owner[e] = e * R / E;
  for (int t = 0; t < T; ++t) {
    for (int i = 0; i < K; ++i)
      idx[t * K + i] = static_cast<int32_t>((t * 5 + i * 4 + rng() % 2) % E);
  }
  std::vector<float> x(T * D);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  for (float& v : x) v = u(rng);
  auto cpu = CreateBackend("cpu").value();
  auto gpu = CreateBackend("cuda").value();
  // Per backend: T rows in, R regions out; read back as f32 and i32.
  struct Moved {
    std::vector<float> x;
    std::vector<int32_t> experts, src, counts;
  };
  auto dispatch = [&](Backend& b) {
    const DType act = b.activation_dtype();
    std::vector<Buffer> keep;
    auto alloc = [&](DType t, std::initializer_list<int64_t> dims) {
      Tensor v(nullptr, t, dims);
      keep.push_back(b.Allocate(v.bytes()).value());
      v.data = keep.back().data();
      REQUIRE(b.Fill(v, t == DType::kI32 ? -7.0f : 0.0f).ok());
      return v;
    };
    Tensor xt = alloc(act, {T, D}), it = alloc(DType::kI32, {T, K}), ot = alloc(DType::kI32, {E});
    Tensor xf = alloc(DType::kF32, {T, D});
    REQUIRE(b.Upload(xf.data, x.data(), xf.bytes()).ok());
    REQUIRE(b.Convert(xf, xt).ok());
    REQUIRE(b.Upload(it.data, idx.data(), it.bytes()).ok());
    REQUIRE(b.Upload(ot.data, owner.data(), ot.bytes()).ok());
    std::vector<ExchangeRegion> to;
    Tensor rx = alloc(act, {R * cap, D}), re = alloc(DType::kI32, {R * cap, K});
    Tensor rs = alloc(DType::kI32, {R * cap}), rc = alloc(DType::kI32, {R});
    for (int r = 0; r < R; ++r) {
      to.push_back(
          {rx.rows(r * cap, cap), re.rows(r * cap, cap), rs.rows(r * cap, cap), rc.rows(r, 1)});
    }
    Tensor scratch = alloc(DType::kI32, {T * R});
    absl::Status s = b.ExchangeDispatch(xt, it, ot, to, scratch);
    INFO(s.ToString());
    REQUIRE(s.ok());
    Moved m;
    Tensor rxf = alloc(DType::kF32, {R * cap, D});
    REQUIRE(b.Convert(rx, rxf).ok());
    m.x.resize(R * cap * D);
    m.experts.resize(R * cap * K);
    m.src.resize(R * cap);
    m.counts.resize(R);
    REQUIRE(b.Download(m.x.data(), rxf.data, rxf.bytes()).ok());
    REQUIRE(b.Download(m.experts.data(), re.data, re.bytes()).ok());
    REQUIRE(b.Download(m.src.data(), rs.data, rs.bytes()).ok());
    REQUIRE(b.Download(m.counts.data(), rc.data, rc.bytes()).ok());
    return m;
  };
  const Moved want = dispatch(*cpu), got = dispatch(*gpu);
  CHECK(got.counts == want.counts);
  int total = 0;
  for (int r = 0; r < R; ++r) {
    total += want.counts[r];
    for (int row = 0; row < want.counts[r]; ++row) {
      const int at = r * cap + row;
      CHECK(got.src[at] == want.src[at]);
      for (int i = 0; i < K; ++i) CHECK(got.experts[at * K + i] == want.experts[at * K + i]);
      // bf16 rows: the CPU's f32 row rounded once.
      for (int d = 0; d < D; ++d) {
        CHECK(std::fabs(got.x[at * D + d] - want.x[at * D + d]) <=
              std::fabs(want.x[at * D + d]) * 4e-3f);
      }
    }
  }
  CHECK(total > T);  // some tokens went to two or three ranks

  // Combine on one rank: rows from 3 sources (counts 5, 0, 7 of capacity 8),
  // every (row, choice) a pair in shuffled order, back into each source's
  // [capacity, k, D] at (source token, choice).
  const int C = 8, k = 2, counts[R] = {5, 0, 7};
  std::vector<int32_t> src_token(R * C, 0), pair_dst;
  for (int r = 0; r < R; ++r) {
    std::vector<int32_t> perm(C);
    for (int i = 0; i < C; ++i) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int row = 0; row < counts[r]; ++row) {
      src_token[r * C + row] = perm[row];
      for (int c = 0; c < k; ++c) pair_dst.push_back((r * C + row) * k + c);
    }
  }
  std::shuffle(pair_dst.begin(), pair_dst.end(), rng);
  const int P = static_cast<int>(pair_dst.size()) + 3;  // 3 slots past pair_count
  pair_dst.resize(P, 0);
  std::vector<float> out(P * D);
  for (float& v : out) v = u(rng);
  auto combine = [&](Backend& b) {
    const DType act = b.activation_dtype();
    std::vector<Buffer> keep;
    auto upload = [&](DType t, std::initializer_list<int64_t> dims, const void* host) {
      Tensor v(nullptr, t, dims);
      keep.push_back(b.Allocate(v.bytes()).value());
      v.data = keep.back().data();
      if (host != nullptr) {
        REQUIRE(b.Upload(v.data, host, v.bytes()).ok());
      } else {
        REQUIRE(b.Fill(v, 0.0f).ok());
      }
      return v;
    };
    const int32_t n = P - 3;
    std::vector<int32_t> cnt(counts, counts + R);
    Tensor of = upload(DType::kF32, {P, D}, out.data()), ot = upload(act, {P, D}, nullptr);
    REQUIRE(b.Convert(of, ot).ok());
    Tensor pd = upload(DType::kI32, {P}, pair_dst.data()), pc = upload(DType::kI32, {1}, &n);
    Tensor st = upload(DType::kI32, {R * C}, src_token.data());
    Tensor ct = upload(DType::kI32, {R}, cnt.data());
    std::vector<Tensor> combined;
    for (int r = 0; r < R; ++r) combined.push_back(upload(act, {C, k, D}, nullptr));
    absl::Status s = b.ExchangeCombine(ot, pd, pc, st, ct, combined);
    INFO(s.ToString());
    REQUIRE(s.ok());
    std::vector<float> all;
    for (const Tensor& c : combined) {
      Tensor f = upload(DType::kF32, {C, k, D}, nullptr);
      REQUIRE(b.Convert(c, f).ok());
      std::vector<float> h(C * k * D);
      REQUIRE(b.Download(h.data(), f.data, f.bytes()).ok());
      all.insert(all.end(), h.begin(), h.end());
    }
    return all;
  };
  const std::vector<float> cw = combine(*cpu), cg = combine(*gpu);
  REQUIRE(cw.size() == cg.size());
  int written = 0;
  for (size_t i = 0; i < cw.size(); ++i) {
    written += cw[i] != 0.0f;
    CHECK(std::fabs(cg[i] - cw[i]) <= std::fabs(cw[i]) * 4e-3f);
  }
  CHECK(written == (5 + 7) * k * D);
}

}  // namespace moegraph::cuda_test
