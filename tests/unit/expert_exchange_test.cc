// The expert-parallel pieces below the engine (docs/expert-parallel.md): the
// expert partition, the in-process exchange (delivery, timeouts, aborts) and
// the routed experts over ranks against the single-rank MoeExperts, bit for bit.
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/parallel/expert_parallel_moe.h"
#include "engine/parallel/in_process_exchange.h"

using namespace moegraph;

namespace {

// Runs fn(rank) on one thread per rank and returns each rank's status.
template <typename Fn>
std::vector<absl::Status> OnRanks(int ranks, Fn fn) {
  std::vector<absl::Status> out(ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) threads.emplace_back([&, r] { out[r] = fn(r); });
  for (auto& t : threads) t.join();
  return out;
}

ExchangeOptions Options(int ranks, int experts, int k, int dim, int capacity) {
  ExchangeOptions o;
  o.num_ranks = ranks;
  o.num_experts = experts;
  o.experts_per_token = k;
  o.hidden = dim;
  o.capacity = capacity;
  return o;
}

// An exchange whose ranks are bound to CPU backends of their own (declared
// first: they outlive the exchange, which frees its buffers through them).
struct BoundExchange {
  std::vector<std::unique_ptr<Backend>> backends;
  std::unique_ptr<InProcessExchange> ex;
  InProcessExchange* operator->() const { return ex.get(); }
};

BoundExchange Bound(const ExchangeOptions& o) {
  BoundExchange b;
  b.ex = InProcessExchange::Create(o).value();
  for (int r = 0; r < o.num_ranks; ++r) {
    b.backends.push_back(CreateCpuBackend());
    REQUIRE(b.ex->rank(r)->Bind(b.backends.back().get()).ok());
  }
  return b;
}

}  // namespace

TEST_CASE("expert partition: contiguous, even, every expert owned once", "[ep]") {
  for (auto [E, R] : {std::pair{8, 1}, std::pair{8, 2}, std::pair{8, 8}, std::pair{6, 4},
                      std::pair{6, 8}, std::pair{256, 8}, std::pair{384, 8}}) {
    ExpertPartition p{E, R};
    int total = 0, lo = E, hi = 0;
    for (int r = 0; r < R; ++r) {
      total += p.count(r);
      lo = std::min(lo, p.count(r));
      hi = std::max(hi, p.count(r));
      for (int e = p.first(r); e < p.first(r) + p.count(r); ++e) CHECK(p.owner(e) == r);
    }
    INFO(E << " experts over " << R << " ranks");
    CHECK(total == E);
    CHECK(hi - lo <= 1);
    CHECK(p.first(R) == E);
  }
  ExpertPartition p{6, 4};  // 1, 2, 1, 2 by floor(r * 6 / 4)
  CHECK(p.first(1) == 1);
  CHECK(p.count(0) == 1);
  CHECK(p.count(1) == 2);
  CHECK(p.owner(2) == 1);
  CHECK(p.owner(3) == 2);
}

TEST_CASE("in-process exchange: a token goes once to each rank holding its experts", "[ep]") {
  // 2 ranks, 4 experts (rank 0: 0-1, rank 1: 2-3), k = 2, D = 3.
  BoundExchange ex = Bound(Options(2, 4, 2, 3, 4));
  // Rank 0: token 0 -> {0, 1} (rank 0 only), token 1 -> {3, 0} (both), token 2 -> {2, 3}.
  std::vector<float> x0 = {1, 1, 1, 2, 2, 2, 3, 3, 3};
  std::vector<int32_t> i0 = {0, 1, 3, 0, 2, 3};
  // Rank 1: one token -> {1, 2}.
  std::vector<float> x1 = {7, 8, 9};
  std::vector<int32_t> i1 = {1, 2};
  auto dispatched = OnRanks(2, [&](int r) {
    return r == 0 ? ex->rank(0)->Dispatch(Tensor(x0.data(), DType::kF32, {3, 3}),
                                          Tensor(i0.data(), DType::kI32, {3, 2}))
                  : ex->rank(1)->Dispatch(Tensor(x1.data(), DType::kF32, {1, 3}),
                                          Tensor(i1.data(), DType::kI32, {1, 2}));
  });
  REQUIRE(dispatched[0].ok());
  REQUIRE(dispatched[1].ok());
  const DispatchedRows& in0 = ex->rank(0)->received();
  const DispatchedRows& in1 = ex->rank(1)->received();
  // Rank 0 gets tokens 0 and 1 of rank 0 and the token of rank 1.
  CHECK(in0.counts.as<int32_t>()[0] == 2);
  CHECK(in0.counts.as<int32_t>()[1] == 1);
  CHECK(in0.x.as<float>()[0] == 1);
  CHECK(in0.x.as<float>()[3] == 2);
  CHECK(in0.x.as<float>()[4 * 3] == 7);  // rank 1's region starts at row capacity = 4
  const int32_t* e0 = in0.experts.as<int32_t>();
  CHECK((e0[0] == 0 && e0[1] == 1 && e0[2] == -1 && e0[3] == 0));
  CHECK((e0[8] == 1 && e0[9] == -1));
  CHECK(in0.src_token.as<int32_t>()[1] == 1);
  // Rank 1 gets tokens 1 and 2 of rank 0 (token 2 once, for both its experts).
  CHECK(in1.counts.as<int32_t>()[0] == 2);
  CHECK(in1.counts.as<int32_t>()[1] == 1);
  const int32_t* e1 = in1.experts.as<int32_t>();
  CHECK((e1[0] == 3 && e1[1] == -1 && e1[2] == 2 && e1[3] == 3));
  CHECK(in1.src_token.as<int32_t>()[1] == 2);

  // Combine: each rank sends back pairs; rank 0 finds them at (token, choice).
  auto fill = [&](int r, std::vector<std::pair<int, float>> pairs) {
    const CombineSend& s = ex->rank(r)->combine_send();
    for (size_t p = 0; p < pairs.size(); ++p) {
      s.pair_dst.as<int32_t>()[p] = pairs[p].first;
      for (int c = 0; c < 3; ++c) s.out.as<float>()[p * 3 + c] = pairs[p].second + c;
    }
    s.pair_count.as<int32_t>()[0] = static_cast<int32_t>(pairs.size());
  };
  fill(0, {{0 * 2 + 0, 10}, {0 * 2 + 1, 20}, {1 * 2 + 1, 30}, {4 * 2 + 0, 40}});
  fill(1, {{0 * 2 + 0, 50}, {1 * 2 + 0, 60}, {1 * 2 + 1, 70}, {4 * 2 + 1, 80}});
  auto combined = OnRanks(2, [&](int r) { return ex->rank(r)->Combine(); });
  REQUIRE(combined[0].ok());
  REQUIRE(combined[1].ok());
  const float* y0 = ex->rank(0)->combined().as<float>();  // [4, 2, 3]
  CHECK(y0[(0 * 2 + 0) * 3] == 10);
  CHECK(y0[(0 * 2 + 1) * 3 + 2] == 22);
  CHECK(y0[(1 * 2 + 0) * 3] == 50);  // token 1's expert 3, from rank 1
  CHECK(y0[(1 * 2 + 1) * 3] == 30);
  CHECK(y0[(2 * 2 + 0) * 3] == 60);
  CHECK(y0[(2 * 2 + 1) * 3 + 1] == 71);
  const float* y1 = ex->rank(1)->combined().as<float>();
  CHECK(y1[0] == 40);
  CHECK(y1[3] == 80);
}

TEST_CASE("in-process exchange with equal rows: ranks bringing different rows are refused",
          "[ep]") {
  ExchangeOptions o = Options(2, 4, 2, 2, 4);
  o.equal_rows = true;
  BoundExchange ex = Bound(o);
  CHECK(ex->rank(0)->equal_rows());
  std::vector<float> x(3 * 2, 1.0f);
  std::vector<int32_t> idx = {0, 3, 1, 2, 2, 3};
  auto dispatch = [&](int r, int rows) {
    return ex->rank(r)->Dispatch(Tensor(x.data(), DType::kF32, {rows, 2}),
                                 Tensor(idx.data(), DType::kI32, {rows, 2}));
  };
  // The same rows on both ranks pass, and the round completes.
  auto same = OnRanks(2, [&](int r) { return dispatch(r, 3); });
  REQUIRE(same[0].ok());
  REQUIRE(same[1].ok());
  for (int r : {0, 1}) ex->rank(r)->combine_send().pair_count.as<int32_t>()[0] = 0;
  auto combined = OnRanks(2, [&](int r) { return ex->rank(r)->Combine(); });
  REQUIRE(combined[0].ok());
  REQUIRE(combined[1].ok());
  // 3 rows against 2: both ranks fail, naming both counts.
  auto differ = OnRanks(2, [&](int r) { return dispatch(r, r == 0 ? 3 : 2); });
  CHECK(differ[0].code() == absl::StatusCode::kInternal);
  CHECK(differ[0].message() ==
        "expert exchange: rank 0 dispatched 3 rows and rank 1 2; the exchange wants every rank's "
        "step padded alike");
  CHECK(differ[1].message() ==
        "expert exchange: rank 1 dispatched 2 rows and rank 0 3; the exchange wants every rank's "
        "step padded alike");
  // Without the option, different rows are the normal case.
  BoundExchange free = Bound(Options(2, 4, 2, 2, 4));
  CHECK_FALSE(free->rank(0)->equal_rows());
  auto any = OnRanks(2, [&](int r) {
    return free->rank(r)->Dispatch(Tensor(x.data(), DType::kF32, {r == 0 ? 3 : 2, 2}),
                                   Tensor(idx.data(), DType::kI32, {r == 0 ? 3 : 2, 2}));
  });
  CHECK(any[0].ok());
  CHECK(any[1].ok());
}

TEST_CASE("in-process exchange: a rank that never arrives is a clear error, not a hang", "[ep]") {
  ExchangeOptions o = Options(3, 4, 2, 2, 2);
  o.timeout = std::chrono::milliseconds(200);
  BoundExchange ex = Bound(o);
  std::vector<float> x(2 * 2, 1.0f);
  std::vector<int32_t> idx = {0, 3, 1, 2};
  const auto t0 = std::chrono::steady_clock::now();
  // Ranks 0 and 2 dispatch; rank 1 never comes.
  auto s = OnRanks(3, [&](int r) -> absl::Status {
    if (r == 1) return absl::OkStatus();
    return ex->rank(r)->Dispatch(Tensor(x.data(), DType::kF32, {2, 2}),
                                 Tensor(idx.data(), DType::kI32, {2, 2}));
  });
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  CHECK(ms < 5000);
  for (int r : {0, 2}) {
    INFO(s[r].ToString());
    CHECK(s[r].code() == absl::StatusCode::kDeadlineExceeded);
    CHECK(s[r].message().find("rank 1 did not reach dispatch within 200 ms") != std::string::npos);
  }
  // Failed stays failed (the missing rank may still write): at once, same error.
  absl::Status again = ex->rank(0)->Combine();
  CHECK(again.code() == absl::StatusCode::kDeadlineExceeded);
  CHECK(ex->status().code() == absl::StatusCode::kDeadlineExceeded);
  ex->Reset();
  CHECK(ex->status().ok());
}

TEST_CASE("in-process exchange: an aborting rank releases the others at once", "[ep]") {
  ExchangeOptions o = Options(2, 2, 1, 1, 1);
  o.timeout = std::chrono::milliseconds(30000);
  BoundExchange ex = Bound(o);
  std::vector<float> x = {1};
  std::vector<int32_t> idx = {0};
  const auto t0 = std::chrono::steady_clock::now();
  auto s = OnRanks(2, [&](int r) -> absl::Status {
    if (r == 1) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      ex->rank(1)->Abort(absl::InvalidArgumentError("seqs[0]: token id 999 outside [0, 320)"));
      return absl::OkStatus();
    }
    return ex->rank(0)->Dispatch(Tensor(x.data(), DType::kF32, {1, 1}),
                                 Tensor(idx.data(), DType::kI32, {1, 1}));
  });
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
  CHECK(s[0].code() == absl::StatusCode::kAborted);
  CHECK(s[0].message() == "expert exchange: rank 1 failed: seqs[0]: token id 999 outside [0, 320)");

  // Bad input is refused by name, and aborts the exchange for the others too.
  ex->Reset();
  std::vector<int32_t> bad = {5};
  absl::Status b = ex->rank(0)->Dispatch(Tensor(x.data(), DType::kF32, {1, 1}),
                                         Tensor(bad.data(), DType::kI32, {1, 1}));
  CHECK(b.code() == absl::StatusCode::kInvalidArgument);
  CHECK(b.message() == "ExchangeDispatch: idx[0, 0] = 5 is not an expert");
  CHECK(ex->status().code() == absl::StatusCode::kAborted);
}

TEST_CASE("experts over 1, 2, 4 and 8 ranks give MoeExperts' bits", "[ep]") {
  // E = 16 experts, k = 2, D = 16, F = 8; routing patterns: random distinct
  // experts, every token on the last rank's experts, and every token the
  // same experts (a hash table on one repeated token); rank 1 is idle.
  const int E = 16, K = 2, D = 16, F = 8, T = 5;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> w1(E * F * D), w3(E * F * D), w2(E * D * F);
  for (auto* v : {&w1, &w3, &w2}) {
    for (float& f : *v) f = u(rng);
  }
  std::unique_ptr<Backend> single = CreateCpuBackend();
  ExpertWeights all;
  all.w1 = Tensor(w1.data(), DType::kF32, {E, F, D});
  all.w3 = Tensor(w3.data(), DType::kF32, {E, F, D});
  all.w2 = Tensor(w2.data(), DType::kF32, {E, D, F});
  enum Pattern { kRandom, kOneRank, kSameForAll };
  for (int R : {1, 2, 4, 8}) {
    for (Pattern pattern : {kRandom, kOneRank, kSameForAll}) {
      ExpertPartition part{E, R};
      // Per rank: tokens (rank 1 idle when R > 1), routing and weights.
      std::vector<int> tokens(R);
      std::vector<std::vector<float>> x(R), w(R), out(R), ref(R);
      std::vector<std::vector<int32_t>> idx(R);
      for (int r = 0; r < R; ++r) {
        tokens[r] = (R > 1 && r == 1) ? 0 : T - r % 3;
        const int n = tokens[r];
        x[r].resize(std::max(1, n) * D);
        for (float& f : x[r]) f = u(rng);
        for (int t = 0; t < n; ++t) {
          for (int i = 0; i < K; ++i) {
            int e = static_cast<int>(rng() % E);
            if (pattern == kOneRank) e = part.first(R - 1) + (t + i) % part.count(R - 1);
            if (pattern == kSameForAll) e = (3 * i + 1) % E;
            if (pattern == kRandom) {
              // Distinct experts, as top-k picks them.
              while (std::find(idx[r].end() - i, idx[r].end(), e) != idx[r].end()) e = (e + 1) % E;
            }
            idx[r].push_back(e);
            w[r].push_back(std::fabs(u(rng)));
          }
        }
        idx[r].resize(std::max(1, n) * K);
        w[r].resize(std::max(1, n) * K);
        out[r].assign(std::max(1, n) * D, std::nanf(""));
        ref[r].assign(std::max(1, n) * D, std::nanf(""));
        if (n > 0) {
          REQUIRE(single
                      ->MoeExperts(Tensor(x[r].data(), DType::kF32, {n, D}),
                                   Tensor(idx[r].data(), DType::kI32, {n, K}),
                                   Tensor(w[r].data(), DType::kF32, {n, K}), all, 10.0f,
                                   Tensor(ref[r].data(), DType::kF32, {n, D}))
                      .ok());
        }
      }
      BoundExchange ex = Bound(Options(R, E, K, D, T));
      std::vector<std::unique_ptr<Backend>>& backends = ex.backends;
      for (int r = 0; r < R; ++r) {
        // Poisoned, so that a pair the experts did not write fails below.
        const Tensor& send = ex->rank(r)->combine_send().out;
        std::fill(send.as<float>(), send.as<float>() + send.numel(), std::nanf(""));
      }
      auto s = OnRanks(R, [&](int r) {
        // The rank's share: a view of experts [first, first + count).
        const int64_t first = part.first(r), count = part.count(r);
        ExpertWeights local;
        if (count > 0) {
          local.w1 = Tensor(w1.data() + first * F * D, DType::kF32, {count, F, D});
          local.w3 = Tensor(w3.data() + first * F * D, DType::kF32, {count, F, D});
          local.w2 = Tensor(w2.data() + first * D * F, DType::kF32, {count, D, F});
        }
        const int n = tokens[r];
        return ExpertParallelRouted(
            *backends[r], *ex->rank(r), Tensor(x[r].data(), DType::kF32, {n, D}),
            Tensor(idx[r].data(), DType::kI32, {n, K}), Tensor(w[r].data(), DType::kF32, {n, K}),
            local, 10.0f, Tensor(out[r].data(), DType::kF32, {n, D}));
      });
      for (int r = 0; r < R; ++r) {
        INFO(R << " ranks, pattern " << pattern << ", rank " << r << ": " << s[r].ToString());
        REQUIRE(s[r].ok());
        const size_t n = static_cast<size_t>(tokens[r]) * D;
        CHECK(std::memcmp(out[r].data(), ref[r].data(), n * sizeof(float)) == 0);
        if (n > 0) CHECK(std::isfinite(out[r][0]));
      }
      // The experts' outputs are in the combine send buffer itself (the op's
      // only output): every pair row there is, bit for bit, what its token's
      // rank received, and every choice of every token is one pair.
      int pairs = 0, choices = 0;
      for (int r = 0; r < R; ++r) {
        choices += tokens[r] * K;
        const CombineSend& send = ex->rank(r)->combine_send();
        const DispatchedRows& in = ex->rank(r)->received();
        const int count = send.pair_count.as<int32_t>()[0];
        pairs += count;
        for (int q = 0; q < count; ++q) {
          const int row = send.pair_dst.as<int32_t>()[q] / K;
          const int choice = send.pair_dst.as<int32_t>()[q] % K;
          const int origin = row / T, token = in.src_token.as<int32_t>()[row];
          const float* sent = send.out.as<float>() + static_cast<size_t>(q) * D;
          const float* got = ex->rank(origin)->combined().as<float>() +
                             (static_cast<size_t>(token) * K + choice) * D;
          CHECK(std::isfinite(sent[0]));
          CHECK(std::memcmp(sent, got, D * sizeof(float)) == 0);
        }
      }
      CHECK(pairs == choices);
    }
  }
}

TEST_CASE("exchange ops refuse bad operands by name", "[ep]") {
  std::unique_ptr<Backend> b = CreateCpuBackend();
  const int R = 2, cap = 2, K = 2, D = 3;
  std::vector<float> rx(R * cap * D), x(3 * D, 1.0f);
  std::vector<int32_t> re(R * cap * K), rs(R * cap), rc(R),
      owner = {0, 0, 1, 1}, idx = {0, 2, 1, 3, 0, 1}, scratch(3 * R);
  std::vector<ExchangeRegion> to;
  for (int r = 0; r < R; ++r) {
    to.push_back({Tensor(rx.data() + r * cap * D, DType::kF32, {cap, D}),
                  Tensor(re.data() + r * cap * K, DType::kI32, {cap, K}),
                  Tensor(rs.data() + r * cap, DType::kI32, {cap}),
                  Tensor(rc.data() + r, DType::kI32, {1})});
  }
  const Tensor own(owner.data(), DType::kI32, {4}), rows(scratch.data(), DType::kI32, {6});
  auto dispatch = [&](int T, int k, const std::vector<ExchangeRegion>& regions, Tensor scr) {
    return std::string(b->ExchangeDispatch(Tensor(x.data(), DType::kF32, {T, D}),
                                           Tensor(idx.data(), DType::kI32, {T, k}), own, regions,
                                           scr)
                           .message());
  };
  CHECK(dispatch(3, K, to, rows) == "ExchangeDispatch: x: 3 rows exceed the regions' capacity 2");
  CHECK(dispatch(2, 3, to, rows) == "ExchangeDispatch: idx: 3 choices, the regions hold 2");
  CHECK(dispatch(2, K, {}, rows) == "ExchangeDispatch: to: no destination ranks");
  CHECK(dispatch(2, K, to, Tensor(scratch.data(), DType::kI32, {3})) ==
        "ExchangeDispatch: rows_scratch: 3 entries, the step needs 4");
  std::vector<int32_t> bad = {0, 9};
  CHECK(b->ExchangeDispatch(Tensor(x.data(), DType::kF32, {1, D}),
                            Tensor(bad.data(), DType::kI32, {1, K}), own, to, rows)
            .message() == "ExchangeDispatch: idx[0, 1] = 9 is not an expert");
  // Two tokens: token 0 to both ranks, token 1 to both; counts 2 and 2.
  REQUIRE(b->ExchangeDispatch(Tensor(x.data(), DType::kF32, {2, D}),
                              Tensor(idx.data(), DType::kI32, {2, K}), own, to, rows)
              .ok());
  CHECK(rc == std::vector<int32_t>{2, 2});

  // Combine: rows of 2 sources of capacity 2, one of them sent 1 row.
  std::vector<float> out(4 * D, 2.0f), c0(cap * K * D), c1(cap * K * D);
  std::vector<int32_t> dst = {0, 1, 2 * K, 3 * K}, src = {0, 1, 0, 1}, counts = {2, 1};
  int32_t n = 4;
  const std::vector<Tensor> combined = {Tensor(c0.data(), DType::kF32, {cap, K, D}),
                                        Tensor(c1.data(), DType::kF32, {cap, K, D})};
  auto combine = [&](const std::vector<Tensor>& into) {
    return b->ExchangeCombine(Tensor(out.data(), DType::kF32, {4, D}),
                              Tensor(dst.data(), DType::kI32, {4}), Tensor(&n, DType::kI32, {1}),
                              Tensor(src.data(), DType::kI32, {4}),
                              Tensor(counts.data(), DType::kI32, {2}), into);
  };
  absl::Status s = combine(combined);
  CHECK(s.code() == absl::StatusCode::kInternal);
  CHECK(s.message() == "ExchangeCombine: pair 3 names row 3, which did not arrive");
  n = 5;
  CHECK(combine(combined).message() == "ExchangeCombine: pair count 5 outside [0, 4]");
  n = 3;
  CHECK(combine({combined[0], Tensor(c1.data(), DType::kF32, {cap, K, 1})})
            .message()
            .find("ExchangeCombine: combined[1]: expected F32 [2, 2, 3]") == 0);
  REQUIRE(combine(combined).ok());
  CHECK(c0[(0 * K + 1) * D] == 2.0f);  // pair 1: row 0 (token 0), choice 1
  CHECK(c1[0] == 2.0f);                // pair 2: row 2 = source 1's row 0, token 0
}
