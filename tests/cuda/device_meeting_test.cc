// [cuda] the in-process exchange's device meetings (docs/expert-parallel.md):
// CUDA ranks sharing one GPU meet on the device instead of at host barriers.
// A round delivers what the host-barrier round delivers; a rank that never
// arrives makes its peer give up after the timeout with an error naming the
// wait; a rank that aborts releases its waiting peer at once; after a reset
// the ranks' counters agree again.
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "engine/backend/cuda/cuda_backend.h"
#include "engine/parallel/in_process_exchange.h"
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

}  // namespace moegraph::cuda_test
