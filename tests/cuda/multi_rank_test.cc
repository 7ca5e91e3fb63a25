// [cuda] several ranks on one GPU (docs/expert-parallel.md): two and four
// CUDA backends sharing the device, their expert exchange and layer handoff
// on device memory, over the multi-rank scenario (requests joining and
// leaving, a chunked prefill, idle ranks) under ep, layers and ep+layers,
// against one rank and the fp32 CPU engine; and the exchange ops move what
// the CPU ops move. In-process CUDA ranks meet on the device, so their
// decode steps run in graphs too.
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "engine/backend/backend_factory.h"
#include "engine/backend/cuda/nccl_exchange.h"
#include "engine/common/bf16.h"
#include "engine/parallel/in_process_exchange.h"
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

// Per logits row of `got` against `ref` (the same rows): max |got - ref| /
// max |ref|, its median and 95th percentile over the rows, and how often the
// two agree on the argmax.
struct RowErrors {
  double median = 0, p95 = 0, argmax = 0;
};
RowErrors Compare(const Trace& got, const Trace& ref, int V) {
  std::vector<double> rel;
  int agree = 0;
  for (size_t s = 0; s < ref.logits.size(); ++s) {
    REQUIRE(got.logits[s].size() == ref.logits[s].size());
    for (size_t r = 0; r * V < ref.logits[s].size(); ++r) {
      const float* g = got.logits[s].data() + r * V;
      const float* w = ref.logits[s].data() + r * V;
      double err = 0, scale = 0;
      for (int i = 0; i < V; ++i) {
        err = std::max(err, std::fabs(static_cast<double>(g[i]) - w[i]));
        scale = std::max(scale, std::fabs(static_cast<double>(w[i])));
      }
      rel.push_back(scale > 0 ? err / scale : err);
      agree += moegraph::testing::Argmax(g, V) == moegraph::testing::Argmax(w, V);
    }
  }
  std::sort(rel.begin(), rel.end());
  RowErrors e;
  e.median = rel[rel.size() / 2];
  e.p95 = rel[std::min(rel.size() - 1, rel.size() * 95 / 100)];
  e.argmax = static_cast<double>(agree) / static_cast<double>(rel.size());
  return e;
}

// A fixture's scenario on the fp32 CPU engine (`ref`), and on one eager CUDA
// rank fed its tokens (`one`, its errors `e1`); `cuda` the options of that
// rank, for the runs under test to start from.
struct Reference {
  Prompts prompts;
  int vocab = 0;
  Trace ref, one;
  RowErrors e1;
  EngineOptions cuda;
};
Reference MakeReference(const char* name) {
  Reference r;
  r.prompts = LoadPrompts(name);
  EngineOptions o = moegraph::testing::Options(r.prompts.dir, r.prompts.max_tokens);
  auto cpu = Dsv4Engine::Create(o);
  INFO(name << ": " << cpu.status().ToString());
  REQUIRE(cpu.ok());
  r.vocab = (*cpu)->info().vocab_size;
  r.ref = moegraph::testing::Run(**cpu, r.prompts.a, r.prompts.b, 0, 5, 2);
  o.device = "cuda";
  o.graphs = "off";
  auto single = Dsv4Engine::Create(o);
  REQUIRE(single.ok());
  r.one = moegraph::testing::Run(**single, r.prompts.a, r.prompts.b, 0, 5, 2, &r.ref.tokens);
  r.e1 = Compare(r.one, r.ref, r.vocab);
  r.cuda = o;
  return r;
}

// EP's errors against one rank's: its pairs travel unweighted in bf16 (one
// rank weights them in fp32 before rounding), one more rounding a pair, the
// same argmax (measured: median 1.0-1.2x, p95 1.0-5.4x one rank's).
void ExpectLikeOneRank(const RowErrors& e, const RowErrors& e1) {
  CHECK(e.median <= 1.5 * e1.median + 2e-3);
  CHECK(e.p95 <= 2 * e1.p95 + 5e-2);
  CHECK(e.argmax >= e1.argmax - 0.05);
}

}  // namespace

// The reference is the CPU engine (fp32, exact against transformers); every
// CUDA run is fed its greedy tokens, so that all see the same inputs. A
// rank's batch is its own sequences only, so its GEMMs take other shapes
// than one rank's and round differently in bf16: EP is held to the
// single-rank engine's error against fp32 (a wrong expert or a lost row
// would be of the logits' own size), layer placement, whose ranks see
// one rank's batches, to its logits.
TEST_CASE("CUDA ranks sharing one GPU: ep, layers and ep+layers against one rank", "[cuda][ep]") {
  for (const char* name : {"dsv4-tiny", "dsv4-topk2", "dsv4-shape", "dsv4-tiny-fp4"}) {
    const Reference r = MakeReference(name);
    const Prompts& prompts = r.prompts;
    const EngineOptions& base = r.cuda;
    const Trace& ref = r.ref;
    const Trace& one = r.one;
    const RowErrors& e1 = r.e1;
    const int V = r.vocab;
    auto single = Dsv4Engine::Create(base);
    REQUIRE(single.ok());
    const Trace one_free = moegraph::testing::Run(**single, prompts.a, prompts.b, 0, 5, 2);
    std::printf(
        "multi-rank cuda: %-14s 1 rank             vs fp32: median %.3g p95 %.3g argmax %.3f\n",
        name, e1.median, e1.p95, e1.argmax);
    // `padded`: every rank's step padded to one token count, idle ranks
    // too (what NCCL's message sizes need), checked by the exchange.
    for (auto [ranks, layout, blocks, padded] :
         {std::tuple{2, "ep", 0, false}, std::tuple{4, "ep", 0, false},
          std::tuple{4, "ep", 0, true}, std::tuple{2, "layers", 0, false},
          std::tuple{4, "ep+layers", 2, false}}) {
      EngineOptions o = base;
      o.devices = Repeat("cuda:0", ranks);
      o.layout = layout;
      o.layer_blocks = blocks;
      o.graphs = "auto";
      o.equal_exchange_rows = padded;
      auto engine = Engine::Create(o);
      INFO(name << " on " << ranks << " CUDA ranks, " << layout << ": "
                << engine.status().ToString());
      REQUIRE(engine.ok());
      auto* multi = dynamic_cast<MultiRankEngine*>(engine->get());
      REQUIRE(multi != nullptr);
      CHECK((*engine)->info().layout.find("devices (in-process CUDA ranks)") != std::string::npos);
      const Trace got = moegraph::testing::Run(*multi, prompts.a, prompts.b, 0, 5, 2, &ref.tokens);
      const RowErrors e = Compare(got, ref, V);
      const Trace free = moegraph::testing::Run(*multi, prompts.a, prompts.b, 0, 5, 2);
      int same = 0;
      for (size_t i = 0; i < free.tokens.size(); ++i) same += free.tokens[i] == one_free.tokens[i];
      std::printf(
          "multi-rank cuda: %-14s %d ranks %-9s%s vs fp32: median %.3g p95 %.3g argmax %.3f; vs "
          "1 rank: max rel %.3g, free-running greedy tokens %d of %zu the same\n",
          name, ranks, layout, padded ? " padded" : "", e.median, e.p95, e.argmax, MaxRel(got, one),
          same, free.tokens.size());
      if (std::string(layout) == "layers") {
        // The ranks see one rank's batches; their GEMM algorithms may still
        // differ from the single rank's (tuned alone): rounding at most.
        CHECK(MaxRel(got, one) <= 1e-5);
        CHECK(free.tokens == one_free.tokens);
      } else {
        ExpectLikeOneRank(e, e1);
      }
    }
  }
}

TEST_CASE("In-process CUDA ranks, ep, layers and ep+layers, eager and in decode graphs",
          "[cuda][ep]") {
  // The ranks meet on the device (no host barrier), so each rank's decode
  // step is its graphs: full, one graph a step holding every MoE layer's
  // dispatch, combine and meetings and the layer handoff's copy and
  // meetings; piecewise, inside the segments.
  for (const char* name : {"dsv4-tiny", "dsv4-topk2", "dsv4-shape", "dsv4-tiny-fp4"}) {
    const Reference r = MakeReference(name);
    for (auto [ranks, layout, blocks] :
         {std::tuple{2, "ep", 0}, std::tuple{4, "ep", 0}, std::tuple{2, "layers", 0},
          std::tuple{4, "layers", 0}, std::tuple{4, "ep+layers", 2}}) {
      std::vector<Trace> runs;
      for (const char* graphs : {"off", "piecewise", "full"}) {
        EngineOptions o = r.cuda;
        o.devices = Repeat("cuda:0", ranks);
        o.layout = layout;
        o.layer_blocks = blocks;
        o.graphs = graphs;
        auto engine = Engine::Create(o);
        INFO(name << ", " << ranks << " in-process ranks, " << layout << ", graphs " << graphs
                  << ": " << engine.status().ToString());
        REQUIRE(engine.ok());
        auto* multi = dynamic_cast<MultiRankEngine*>(engine->get());
        REQUIRE(multi != nullptr);
        CHECK((*engine)->info().layout.find(std::string("decode graphs ") + graphs) !=
              std::string::npos);
        const auto t0 = std::chrono::steady_clock::now();
        runs.push_back(
            moegraph::testing::Run(*multi, r.prompts.a, r.prompts.b, 0, 5, 2, &r.ref.tokens));
        const double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count();
        // The last step (two sequences decoding) ran in the graphs on every
        // rank holding a sequence; an ep rank without one serves its experts
        // eagerly (StepIdle), as layers and ep+layers ranks never do here.
        const std::string want = std::string(graphs) == "off" ? "eager" : graphs;
        const std::string mode = multi->rank(0)->last_step_mode();
        CHECK(mode == want);
        for (int q = 1; q < ranks; ++q) {
          const std::string m = multi->rank(q)->last_step_mode();
          CHECK((m == want || (std::string(layout) == "ep" && m == "eager")));
        }
        const RowErrors e = Compare(runs.back(), r.ref, r.vocab);
        std::printf(
            "multi-rank cuda: %-14s in-process %d ranks %-9s graphs %-9s vs fp32: median %.3g "
            "p95 %.3g argmax %.3f (1 rank: %.3g %.3g %.3f); vs graphs off: max rel %.3g, vs 1 "
            "rank %.3g; last step %s; scenario %.0f ms\n",
            name, ranks, layout, graphs, e.median, e.p95, e.argmax, r.e1.median, r.e1.p95,
            r.e1.argmax, MaxRel(runs.back(), runs.front()), MaxRel(runs.back(), r.one),
            mode.c_str(), ms);
        if (std::string(layout) == "layers") {
          CHECK(MaxRel(runs.back(), r.one) <= 1e-5);  // one rank's batches
        } else {
          ExpectLikeOneRank(e, r.e1);
        }
        // The same kernels in and out of graphs: rounding of GEMM algorithm
        // choices at most (NCCL over one rank: within 1.6e-7).
        CHECK(MaxRel(runs.back(), runs.front()) <= 1e-5);
      }
    }
  }
}

TEST_CASE("NCCL ep over one rank, eager and in decode graphs, against one rank",
          "[cuda][ep][nccl]") {
  // The NCCL exchange sends to itself; with no host barrier it sits inside
  // the captured decode graphs (full: one graph a step with every MoE
  // layer's exchange; piecewise: inside the segments).
  for (const char* name : {"dsv4-tiny", "dsv4-topk2", "dsv4-shape", "dsv4-tiny-fp4"}) {
    const Reference r = MakeReference(name);
    const Prompts& prompts = r.prompts;
    const Trace& ref = r.ref;
    const RowErrors& e1 = r.e1;
    const int V = r.vocab;
    std::vector<Trace> runs;
    for (const char* graphs : {"off", "piecewise", "full"}) {
      EngineOptions o = r.cuda;
      o.devices = "cuda:0";
      o.layout = "ep";
      o.transport = "nccl";
      o.graphs = graphs;
      auto engine = Engine::Create(o);
      INFO(name << ", nccl, graphs " << graphs << ": " << engine.status().ToString());
      REQUIRE(engine.ok());
      auto* multi = dynamic_cast<MultiRankEngine*>(engine->get());
      REQUIRE(multi != nullptr);
      CHECK((*engine)->info().layout.find(std::string("exchange nccl, decode graphs ") + graphs) !=
            std::string::npos);
      runs.push_back(moegraph::testing::Run(*multi, prompts.a, prompts.b, 0, 5, 2, &ref.tokens));
      // The scenario ends on a decode step of two sequences.
      const std::string mode = multi->rank(0)->last_step_mode();
      CHECK(mode == (std::string(graphs) == "off" ? "eager" : graphs));
      const RowErrors e = Compare(runs.back(), ref, V);
      std::printf(
          "multi-rank cuda: %-14s nccl 1 rank graphs %-9s vs fp32: median %.3g p95 %.3g argmax "
          "%.3f (1 rank: %.3g %.3g %.3f); vs graphs off: max rel %.3g; last step %s\n",
          name, graphs, e.median, e.p95, e.argmax, e1.median, e1.p95, e1.argmax,
          MaxRel(runs.back(), runs.front()), mode.c_str());
      ExpectLikeOneRank(e, e1);
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

TEST_CASE("NCCL exchange with one rank delivers what the in-process one does", "[cuda][ep][nccl]") {
  // One rank: every row goes to itself, through NCCL's send/receive to self
  // (fixed-size regions) or through the in-process exchange's direct writes.
  ExchangeOptions o;
  o.num_ranks = 1;
  o.num_experts = 16;
  o.experts_per_token = 4;
  o.hidden = 256;
  o.capacity = 40;
  const int T = 33, K = 4, D = 256;
  auto comms = NcclComms::Create({0});
  INFO(comms.status().ToString());
  REQUIRE(comms.ok());
  auto b_in = CreateBackend("cuda").value();
  auto b_nccl = CreateBackend("cuda").value();
  auto in = InProcessExchange::Create(o).value();
  REQUIRE(in->rank(0)->Bind(b_in.get()).ok());
  auto nccl = CreateNcclExchange(o, **comms, 0);
  REQUIRE(nccl.ok());
  ExpertExchange& nx = **nccl;
  REQUIRE(nx.Bind(b_nccl.get()).ok());
  ExpertExchange& ix = *in->rank(0);
  std::mt19937 rng(5);
  std::vector<uint16_t> x(T * D);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (uint16_t& v : x) v = FloatToBf16(u(rng));
  std::vector<int32_t> idx(T * K);
  for (int t = 0; t < T; ++t) {
    for (int i = 0; i < K; ++i) idx[t * K + i] = (t * 3 + i * 5) % 16;
  }
  std::vector<Buffer> keep;
  auto on = [&](Backend& b, DType t, std::initializer_list<int64_t> dims, const void* host) {
    Tensor v(nullptr, t, dims);
    keep.push_back(b.Allocate(v.bytes()).value());
    v.data = keep.back().data();
    REQUIRE(b.Upload(v.data, host, v.bytes()).ok());
    return v;
  };
  auto fetch = [&](Backend& b, const Tensor& t) {
    std::vector<char> h(t.bytes());
    REQUIRE(b.Download(h.data(), t.data, t.bytes()).ok());
    return h;
  };
  for (int round = 0; round < 2; ++round) {  // the second reuses every buffer
    for (auto [b, ex] : {std::pair{b_in.get(), &ix}, std::pair{b_nccl.get(), &nx}}) {
      absl::Status s = ex->Dispatch(on(*b, DType::kBF16, {T, D}, x.data()),
                                    on(*b, DType::kI32, {T, K}, idx.data()));
      INFO(s.ToString());
      REQUIRE(s.ok());
    }
    const DispatchedRows &ri = ix.received(), &rn = nx.received();
    CHECK(fetch(*b_nccl, rn.counts) == fetch(*b_in, ri.counts));
    CHECK(fetch(*b_nccl, rn.x) == fetch(*b_in, ri.x));
    CHECK(fetch(*b_nccl, rn.experts) == fetch(*b_in, ri.experts));
    CHECK(fetch(*b_nccl, rn.src_token) == fetch(*b_in, ri.src_token));
    // Every (row, choice) a pair, in reverse order, with distinct outputs.
    std::vector<int32_t> dst;
    for (int row = T - 1; row >= 0; --row) {
      for (int i = 0; i < K; ++i) dst.push_back(row * K + i);
    }
    const int32_t n = static_cast<int32_t>(dst.size());
    std::vector<uint16_t> out(static_cast<size_t>(n) * D);
    for (uint16_t& v : out) v = FloatToBf16(u(rng));
    for (auto [b, ex] : {std::pair{b_in.get(), &ix}, std::pair{b_nccl.get(), &nx}}) {
      const CombineSend& cs = ex->combine_send();
      REQUIRE(cs.out.dim(0) >= n);
      REQUIRE(b->Upload(cs.out.data, out.data(), out.size() * 2).ok());
      REQUIRE(b->Upload(cs.pair_dst.data, dst.data(), dst.size() * 4).ok());
      REQUIRE(b->Upload(cs.pair_count.data, &n, 4).ok());
      absl::Status s = ex->Combine();
      INFO(s.ToString());
      REQUIRE(s.ok());
    }
    const std::vector<char> ci = fetch(*b_in, ix.combined().rows(0, T));
    CHECK(fetch(*b_nccl, nx.combined().rows(0, T)) == ci);
    // And the values are where they belong: pair (row, i) of token row.
    const uint16_t* c = reinterpret_cast<const uint16_t*>(ci.data());
    CHECK(c[(5 * K + 2) * D + 7] == out[((T - 1 - 5) * K + 2) * D + 7]);
  }
}

}  // namespace moegraph::cuda_test
