// [cuda] the in-process exchange's device meetings (docs/expert-parallel.md):
// CUDA ranks sharing one GPU meet on the device instead of at host barriers.
// A round delivers what the host-barrier round delivers; a rank that never
// arrives makes its peer give up after the timeout with an error naming the
// wait; a rank that aborts releases its waiting peer at once; after a reset
// the ranks' counters agree again. The layer handoff's device meetings
// likewise: the streams arrive as sent, step after step, and a missing
// sender is a clear error after the timeout.
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "engine/backend/cuda/cuda_backend.h"
#include "engine/parallel/in_process_exchange.h"
#include "engine/parallel/in_process_handoff.h"
#include "tests/cuda/backend_pair.h"

namespace moegraph::cuda_test {
namespace {

constexpr int R = 2, E = 8, K = 2, D = 64, T = 5;

// Two CUDA ranks on device 0 with one exchange, each with T tokens routed
// at random (no expert pairs: the combine returns none).
struct Ranks {
  std::vector<std::unique_ptr<Backend>> backends;
  std::unique_ptr<InProcessExchange> ex;
  std::vector<Buffer> keep;
  std::vector<Tensor> x, idx;

  explicit Ranks(bool device_meetings, std::chrono::milliseconds timeout) {
    ExchangeOptions o;
    o.num_ranks = R;
    o.num_experts = E;
    o.experts_per_token = K;
    o.hidden = D;
    o.capacity = T;
    o.timeout = timeout;
    o.device_meetings = device_meetings;
    ex = InProcessExchange::Create(o).value();
    for (int r = 0; r < R; ++r) {
      backends.push_back(CreateCudaBackend(0).value());
      REQUIRE(ex->rank(r)->Bind(backends[r].get()).ok());
    }
    for (int r = 0; r < R; ++r) {
      Backend& b = *backends[r];
      const std::vector<float> xv = RandomBf16(T * D, 1.0f);
      const std::vector<int32_t> iv = RandomRouting(T, E, K);
      Tensor xf(nullptr, DType::kF32, {T, D});
      keep.push_back(b.Allocate(xf.bytes()).value());
      xf.data = keep.back().data();
      x.emplace_back(nullptr, DType::kBF16, std::initializer_list<int64_t>{T, D});
      keep.push_back(b.Allocate(x.back().bytes()).value());
      x.back().data = keep.back().data();
      idx.emplace_back(nullptr, DType::kI32, std::initializer_list<int64_t>{T, K});
      keep.push_back(b.Allocate(idx.back().bytes()).value());
      idx.back().data = keep.back().data();
      REQUIRE(b.Upload(xf.data, xv.data(), xf.bytes()).ok());
      REQUIRE(b.Convert(xf, x.back()).ok());
      REQUIRE(b.Upload(idx.back().data, iv.data(), idx.back().bytes()).ok());
      REQUIRE(b.Synchronize().ok());
      // Device meetings start once the workspaces are frozen (after an
      // engine's load-time warm-up).
      b.FreezeWorkspaces();
    }
  }

  // One dispatch + combine on rank r's thread, then Finish.
  absl::Status Round(int r) {
    ExpertExchange& e = *ex->rank(r);
    absl::Status s = e.Dispatch(x[r], idx[r]);
    if (s.ok()) s = e.Combine();
    if (s.ok()) s = e.Finish();
    return s;
  }

  // Both ranks' rounds, each on its own thread.
  std::vector<absl::Status> Both() {
    std::vector<absl::Status> status(R);
    std::vector<std::thread> threads;
    for (int r = 0; r < R; ++r) threads.emplace_back([&, r] { status[r] = Round(r); });
    for (auto& t : threads) t.join();
    return status;
  }

  // What rank r received: counts, then each region's rows, as f32.
  std::vector<float> Received(int r) {
    const DispatchedRows& in = ex->rank(r)->received();
    std::vector<int32_t> counts = FetchI32(*backends[r], in.counts);
    std::vector<float> out(counts.begin(), counts.end());
    for (int s = 0; s < R; ++s) {
      const std::vector<float> rows = Fetch(*backends[r], in.x.rows(s * T, counts[s]));
      out.insert(out.end(), rows.begin(), rows.end());
      const std::vector<int32_t> src = FetchI32(*backends[r], in.src_token.rows(s * T, counts[s]));
      out.insert(out.end(), src.begin(), src.end());
    }
    return out;
  }
};

}  // namespace

TEST_CASE("Device meetings: a round delivers what host barriers deliver", "[cuda][ep]") {
  ReseedRng("device meetings round");
  Ranks host(false, std::chrono::milliseconds(5000));
  ReseedRng("device meetings round");
  Ranks device(true, std::chrono::milliseconds(5000));
  for (int round = 0; round < 3; ++round) {
    for (const absl::Status& s : host.Both()) REQUIRE(s.ok());
    for (const absl::Status& s : device.Both()) {
      INFO(s.ToString());
      REQUIRE(s.ok());
    }
    for (int r = 0; r < R; ++r) {
      const std::vector<float> want = host.Received(r), got = device.Received(r);
      CHECK(got == want);
      CHECK(want.size() > static_cast<size_t>(R));  // some rows moved
    }
  }
}

TEST_CASE("Device meetings: a missing rank times out, an aborting one releases its peer",
          "[cuda][ep]") {
  ReseedRng("device meetings failures");
  SECTION("missing") {
    Ranks ranks(true, std::chrono::milliseconds(300));
    const auto t0 = std::chrono::steady_clock::now();
    const absl::Status s = ranks.Round(0);  // rank 1 never dispatches
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    INFO(s.ToString() << " after " << ms << " ms");
    CHECK(s.code() == absl::StatusCode::kDeadlineExceeded);
    CHECK(s.message().find("rank 0 waited on the device more than 300 ms") !=
          absl::string_view::npos);
    CHECK(ms >= 300);
    CHECK(ms < 5000);
    CHECK(ranks.ex->status().code() == absl::StatusCode::kDeadlineExceeded);
    // Reset: the counters start again on both ranks, and a round works.
    ranks.ex->Reset();
    CHECK(ranks.ex->status().ok());
    for (const absl::Status& r : ranks.Both()) {
      INFO(r.ToString());
      CHECK(r.ok());
    }
  }
  SECTION("abort") {
    Ranks ranks(true, std::chrono::milliseconds(60000));
    absl::Status s0;
    const auto t0 = std::chrono::steady_clock::now();
    std::thread rank0([&] { s0 = ranks.Round(0); });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // rank 0 waits on the device
    ranks.ex->rank(1)->Abort(absl::InvalidArgumentError("its plan was bad"));
    rank0.join();
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    INFO(s0.ToString() << " after " << ms << " ms");
    CHECK(s0.code() == absl::StatusCode::kAborted);
    CHECK(s0.message().find("rank 1 failed: its plan was bad") != absl::string_view::npos);
    CHECK(ms < 10000);  // released, not the 60 s timeout
    ranks.ex->Reset();
    for (const absl::Status& r : ranks.Both()) {
      INFO(r.ToString());
      CHECK(r.ok());
    }
  }
}

namespace {

// Three CUDA ranks on device 0 joined by a handoff meeting on the device;
// each has a streams tensor act [T, n, D].
struct HandoffRanks {
  static constexpr int kRanks = 3, kN = 2, kD = 48, kCap = 6;
  std::vector<std::unique_ptr<Backend>> backends;
  std::unique_ptr<InProcessHandoff> handoff;
  std::vector<Buffer> keep;
  std::vector<Tensor> streams;

  explicit HandoffRanks(std::chrono::milliseconds timeout) {
    InProcessHandoffOptions o;
    o.num_ranks = kRanks;
    o.capacity = kCap;
    o.streams = kN;
    o.hidden = kD;
    o.timeout = timeout;
    o.device_meetings = true;
    handoff = InProcessHandoff::Create(o).value();
    for (int r = 0; r < kRanks; ++r) {
      backends.push_back(CreateCudaBackend(0).value());
      REQUIRE(handoff->rank(r)->Bind(backends[r].get()).ok());
      Tensor t(nullptr, DType::kBF16, {kCap, kN, kD});
      keep.push_back(backends[r]->Allocate(t.bytes()).value());
      t.data = keep.back().data();
      REQUIRE(backends[r]->Fill(t, 0.0f).ok());
      REQUIRE(backends[r]->Synchronize().ok());
      backends[r]->FreezeWorkspaces();
      streams.push_back(t);
    }
  }

  // Rank 0 sends `x` (f32 values, T rows); rank 1 receives and sends on;
  // rank 2 receives. Each on its own thread, each then Finish.
  std::vector<absl::Status> Pass(const std::vector<float>& x, int T) {
    Backend& b0 = *backends[0];
    Tensor xf(nullptr, DType::kF32, {T, kN, kD});
    Buffer xb = b0.Allocate(xf.bytes()).value();
    xf.data = xb.data();
    REQUIRE(b0.Upload(xf.data, x.data(), xf.bytes()).ok());
    REQUIRE(b0.Convert(xf, streams[0].rows(0, T)).ok());
    REQUIRE(b0.Synchronize().ok());
    std::vector<absl::Status> status(kRanks);
    std::vector<std::thread> threads;
    for (int r = 0; r < kRanks; ++r) {
      threads.emplace_back([&, r] {
        ResidualHandoff& h = *handoff->rank(r);
        const Tensor mine = streams[r].rows(0, T);
        absl::Status s;
        if (r > 0) s = h.Receive(mine);
        if (s.ok() && r + 1 < kRanks) s = h.Send(mine);
        if (s.ok()) s = h.Finish();
        status[r] = s;
      });
    }
    for (auto& t : threads) t.join();
    return status;
  }
};

}  // namespace

TEST_CASE("Device meetings: the layer handoff delivers the streams, or times out clearly",
          "[cuda][layers]") {
  ReseedRng("device handoff");
  using H = HandoffRanks;
  SECTION("delivers") {
    H ranks(std::chrono::milliseconds(5000));
    for (int T : {H::kCap, 1, 4}) {  // each step rewrites the buffers
      const std::vector<float> x = RandomBf16(int64_t{T} * H::kN * H::kD, 1.0f);
      for (const absl::Status& s : ranks.Pass(x, T)) {
        INFO(s.ToString());
        REQUIRE(s.ok());
      }
      CHECK(Fetch(*ranks.backends[2], ranks.streams[2].rows(0, T)) == x);
      CHECK(Fetch(*ranks.backends[1], ranks.streams[1].rows(0, T)) == x);
    }
  }
  SECTION("missing sender") {
    H ranks(std::chrono::milliseconds(300));
    const auto t0 = std::chrono::steady_clock::now();
    ResidualHandoff& h1 = *ranks.handoff->rank(1);
    absl::Status s = h1.Receive(ranks.streams[1].rows(0, 2));  // rank 0 never sends
    if (s.ok()) s = h1.Finish();
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    INFO(s.ToString() << " after " << ms << " ms");
    CHECK(s.code() == absl::StatusCode::kDeadlineExceeded);
    CHECK(s.message().find("rank 1 waited on the device more than 300 ms at handoff 0->1") !=
          absl::string_view::npos);
    CHECK(ms >= 300);
    CHECK(ms < 5000);  // the second meeting stops at once
    CHECK(ranks.handoff->status().code() == absl::StatusCode::kDeadlineExceeded);
    ranks.handoff->Reset();
    CHECK(ranks.handoff->status().ok());
    const std::vector<float> x = RandomBf16(3 * H::kN * H::kD, 1.0f);
    for (const absl::Status& r : ranks.Pass(x, 3)) {
      INFO(r.ToString());
      CHECK(r.ok());
    }
    CHECK(Fetch(*ranks.backends[2], ranks.streams[2].rows(0, 3)) == x);
  }
}

}  // namespace moegraph::cuda_test
