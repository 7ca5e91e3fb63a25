// The in-process expert exchange on one GPU (hidden tag: run with
// `moegraph_cuda_tests "[bench][exchange]"`): two ranks sharing the device,
// each with T decode tokens (hidden 4096, top-6 of 256 experts), one
// dispatch + combine round as a MoE layer runs it (kernels, then stream syncs
// and host barriers, or the device meetings: rounds enqueued back to back,
// one sync at the end), the two data-movement kernels alone, and a
// device-to-device copy of the same bytes in the same run. Medians of many
// rounds after warm-up.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/nccl_exchange.h"
#include "engine/parallel/in_process_exchange.h"
#include "tests/cuda/backend_pair.h"

namespace moegraph::cuda_test {
namespace {

double Median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

// Microseconds per call of `fn` enqueued on `stream`, from events, median of
// 7 batches of 20 after 5 warm-up calls.
template <typename Fn>
double EventUs(cudaStream_t stream, Fn fn) {
  for (int i = 0; i < 5; ++i) fn();
  cudaEvent_t a, b;
  REQUIRE(cudaEventCreate(&a) == cudaSuccess);
  REQUIRE(cudaEventCreate(&b) == cudaSuccess);
  std::vector<double> us;
  for (int rep = 0; rep < 7; ++rep) {
    REQUIRE(cudaEventRecord(a, stream) == cudaSuccess);
    for (int i = 0; i < 20; ++i) fn();
    REQUIRE(cudaEventRecord(b, stream) == cudaSuccess);
    REQUIRE(cudaEventSynchronize(b) == cudaSuccess);
    float ms = 0;
    REQUIRE(cudaEventElapsedTime(&ms, a, b) == cudaSuccess);
    us.push_back(ms * 1e3 / 20);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return Median(us);
}

// `rounds(n)` runs n rounds and returns microseconds per round: the median
// of 7 batches of 50 after 10 to warm up.
template <typename Fn>
double MedianRoundUs(Fn rounds) {
  rounds(10);
  std::vector<double> us;
  for (int rep = 0; rep < 7; ++rep) us.push_back(rounds(50));
  return Median(us);
}

// One device-to-device copy of `bytes`, from events (EventUs).
double CopyUs(size_t bytes) {
  void *src = nullptr, *dst = nullptr;
  REQUIRE(cudaMalloc(&src, bytes) == cudaSuccess);
  REQUIRE(cudaMalloc(&dst, bytes) == cudaSuccess);
  cudaStream_t stream;
  REQUIRE(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess);
  const double us = EventUs(stream, [&] {
    REQUIRE(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream) == cudaSuccess);
  });
  cudaFree(src);
  cudaFree(dst);
  cudaStreamDestroy(stream);
  return us;
}

}  // namespace

TEST_CASE("OpBenchExchange", "[.bench][exchange]") {
  ReseedRng("OpBenchExchange");
  const int R = 2, E = 256, K = 6, D = 4096;
  std::vector<std::pair<bool, int>> cases;  // (device meetings, tokens a rank)
  for (bool device_meetings : {false, true}) {
    for (int T : {1, 8, 32, 64, 128, 256}) cases.emplace_back(device_meetings, T);
  }
  for (const auto& [device_meetings, T] : cases) {
    std::vector<std::unique_ptr<Backend>> backends;
    for (int r = 0; r < R; ++r) backends.push_back(CreateCudaBackend(0).value());
    ExchangeOptions o;
    o.num_ranks = R;
    o.num_experts = E;
    o.experts_per_token = K;
    o.hidden = D;
    o.capacity = T;
    o.device_meetings = device_meetings;
    auto ex = InProcessExchange::Create(o).value();
    for (int r = 0; r < R; ++r) {
      REQUIRE(ex->rank(r)->Bind(backends[r].get()).ok());
      backends[r]->FreezeWorkspaces();  // device meetings start frozen (as after a load)
    }
    const ExpertPartition& part = ex->rank(0)->partition();
    // Per rank: its tokens and routing; what each destination receives from
    // it (rows in token order, as the kernels place them) gives the pairs
    // each rank's experts return.
    std::vector<Buffer> keep;
    std::vector<Tensor> x(R), idx(R);
    std::vector<std::vector<int32_t>> pair_dst(R);
    int64_t rows = 0, pairs = 0;
    for (int s = 0; s < R; ++s) {
      Backend& b = *backends[s];
      const std::vector<float> xv = RandomBf16(int64_t{T} * D, 1.0f);
      const std::vector<int32_t> iv = RandomRouting(T, E, K);
      Tensor xf(nullptr, DType::kF32, {T, D});
      keep.push_back(b.Allocate(xf.bytes()).value());
      xf.data = keep.back().data();
      x[s] = Tensor(nullptr, DType::kBF16, {T, D});
      keep.push_back(b.Allocate(x[s].bytes()).value());
      x[s].data = keep.back().data();
      idx[s] = Tensor(nullptr, DType::kI32, {T, K});
      keep.push_back(b.Allocate(idx[s].bytes()).value());
      idx[s].data = keep.back().data();
      REQUIRE(b.Upload(xf.data, xv.data(), xf.bytes()).ok());
      REQUIRE(b.Convert(xf, x[s]).ok());
      REQUIRE(b.Upload(idx[s].data, iv.data(), idx[s].bytes()).ok());
      REQUIRE(b.Synchronize().ok());
      for (int d = 0; d < R; ++d) {
        int n = 0;
        for (int t = 0; t < T; ++t) {
          bool wanted = false;
          for (int i = 0; i < K; ++i) wanted |= part.owner(iv[t * K + i]) == d;
          if (!wanted) continue;
          for (int i = 0; i < K; ++i) {
            if (part.owner(iv[t * K + i]) == d) pair_dst[d].push_back((s * T + n) * K + i);
          }
          ++n;
        }
        rows += n;
      }
    }
    for (int d = 0; d < R; ++d) {
      const CombineSend& send = ex->rank(d)->combine_send();
      REQUIRE(static_cast<int64_t>(pair_dst[d].size()) <= send.pair_dst.dim(0));
      const int32_t n = static_cast<int32_t>(pair_dst[d].size());
      REQUIRE(backends[d]->Upload(send.pair_dst.data, pair_dst[d].data(), n * 4).ok());
      REQUIRE(backends[d]->Upload(send.pair_count.data, &n, 4).ok());
      REQUIRE(backends[d]->Synchronize().ok());
      pairs += n;
    }
    // Whole rounds, every rank on its own thread as the engine runs them.
    auto rounds = [&](int count) {
      std::vector<std::thread> threads;
      std::vector<absl::Status> status(R);
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < R; ++r) {
        threads.emplace_back([&, r] {
          for (int i = 0; i < count && status[r].ok(); ++i) {
            status[r] = ex->rank(r)->Dispatch(x[r], idx[r]);
            if (status[r].ok()) status[r] = ex->rank(r)->Combine();
          }
          if (status[r].ok()) status[r] = ex->rank(r)->Finish();  // device meetings: sync
        });
      }
      for (auto& t : threads) t.join();
      for (const auto& s : status) REQUIRE(s.ok());
      return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                 .count() /
             count;
    };
    const double round_us = MedianRoundUs(rounds);
    // The kernels alone on rank 0's stream (its dispatch into both ranks'
    // regions, its combine back into both ranks' outputs).
    std::vector<ExchangeRegion> to;
    std::vector<Tensor> combined;
    for (int d = 0; d < R; ++d) {
      const DispatchedRows& in = ex->rank(d)->received();
      to.push_back(
          {in.x.rows(0, T), in.experts.rows(0, T), in.src_token.rows(0, T), in.counts.rows(0, 1)});
      combined.push_back(ex->rank(d)->combined());
    }
    Tensor owner(nullptr, DType::kI32, {E}), scratch(nullptr, DType::kI32, {T * R});
    std::vector<int32_t> ov(E);
    for (int e = 0; e < E; ++e) ov[e] = part.owner(e);
    Backend& b0 = *backends[0];
    keep.push_back(b0.Allocate(owner.bytes()).value());
    owner.data = keep.back().data();
    keep.push_back(b0.Allocate(scratch.bytes()).value());
    scratch.data = keep.back().data();
    REQUIRE(b0.Upload(owner.data, ov.data(), owner.bytes()).ok());
    REQUIRE(b0.Synchronize().ok());
    // Kernel time via the backend's own stream: synchronize per batch.
    auto timed = [&](auto op) {
      for (int i = 0; i < 5; ++i) REQUIRE(op().ok());
      REQUIRE(b0.Synchronize().ok());
      std::vector<double> us;
      for (int rep = 0; rep < 7; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < 200; ++i) REQUIRE(op().ok());
        REQUIRE(b0.Synchronize().ok());
        us.push_back(
            std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                .count() /
            200);
      }
      return Median(us);
    };
    const double dispatch_us =
        timed([&] { return b0.ExchangeDispatch(x[0], idx[0], owner, to, scratch); });
    const CombineSend& send = ex->rank(0)->combine_send();
    const DispatchedRows& in0 = ex->rank(0)->received();
    const double combine_us = timed([&] {
      return b0.ExchangeCombine(send.out, send.pair_dst, send.pair_count, in0.src_token, in0.counts,
                                combined);
    });
    // The same bytes as a whole round moves (every rank's rows and pairs),
    // copied device to device in one call.
    const size_t bytes = static_cast<size_t>(rows + pairs) * D * 2;
    const double copy_us = CopyUs(bytes);
    const double floor_us = 2.0 * bytes / 4.3e12 * 1e6;  // read + write
    std::printf(
        "EXCHANGE-BENCH|in-process 2 ranks, 1 GPU, %s|tokens/rank=%d|rows %lld pairs %lld|%.2f "
        "MB|round "
        "%.1f us|rank 0 dispatch op %.1f us|combine op %.1f us|d2d copy %.1f us|floor %.1f us\n",
        device_meetings ? "device meetings" : "host barriers", T, static_cast<long long>(rows),
        static_cast<long long>(pairs), bytes / 1e6, round_us, dispatch_us, combine_us, copy_us,
        floor_us);
    std::fflush(stdout);
  }
}

// NCCL with one rank: the same round through send/receive to itself of the
// call's T rows of each region (what a captured step of bucket T sends
// whatever the counts; the regions hold 2048), and a device copy of those
// bytes.
TEST_CASE("OpBenchExchangeNccl", "[.bench][exchange]") {
  ReseedRng("OpBenchExchangeNccl");
  const int E = 256, K = 6, D = 4096;
  auto comms = NcclComms::Create({0});
  INFO(comms.status().ToString());
  REQUIRE(comms.ok());
  for (int T : {1, 8, 32, 64, 128, 256}) {
    auto backend = CreateCudaBackend(0).value();
    Backend& b = *backend;
    ExchangeOptions o;
    o.num_ranks = 1;
    o.num_experts = E;
    o.experts_per_token = K;
    o.hidden = D;
    // A prefill chunk's capacity: the messages are the call's T rows.
    o.capacity = 2048;
    auto ex = CreateNcclExchange(o, **comms, 0).value();
    REQUIRE(ex->Bind(&b).ok());
    std::vector<Buffer> keep;
    const std::vector<float> xv = RandomBf16(int64_t{T} * D, 1.0f);
    const std::vector<int32_t> iv = RandomRouting(T, E, K);
    Tensor xf(nullptr, DType::kF32, {T, D}), x(nullptr, DType::kBF16, {T, D}),
        idx(nullptr, DType::kI32, {T, K});
    for (Tensor* t : {&xf, &x, &idx}) {
      keep.push_back(b.Allocate(t->bytes()).value());
      t->data = keep.back().data();
    }
    REQUIRE(b.Upload(xf.data, xv.data(), xf.bytes()).ok());
    REQUIRE(b.Convert(xf, x).ok());
    REQUIRE(b.Upload(idx.data, iv.data(), idx.bytes()).ok());
    std::vector<int32_t> dst;
    for (int t = 0; t < T; ++t) {
      for (int i = 0; i < K; ++i) dst.push_back(t * K + i);
    }
    const int32_t n = static_cast<int32_t>(dst.size());
    const CombineSend& send = ex->combine_send();
    REQUIRE(b.Upload(send.pair_dst.data, dst.data(), dst.size() * 4).ok());
    REQUIRE(b.Upload(send.pair_count.data, &n, 4).ok());
    REQUIRE(b.Synchronize().ok());
    auto rounds = [&](int count) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < count; ++i) {
        REQUIRE(ex->Dispatch(x, idx).ok());
        REQUIRE(ex->Combine().ok());
      }
      REQUIRE(b.Synchronize().ok());
      return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                 .count() /
             count;
    };
    const double round_us = MedianRoundUs(rounds);
    // Dispatch regions (rows, ids, source tokens, count) and the combine
    // region, each sent and received once.
    const size_t bytes = static_cast<size_t>(T) * D * 2 + static_cast<size_t>(T) * K * 4 +
                         static_cast<size_t>(T) * 4 + 4 + static_cast<size_t>(T) * K * D * 2;
    const double copy_us = CopyUs(bytes);
    std::printf(
        "EXCHANGE-BENCH|NCCL 1 rank (to itself)|tokens/rank=%d|T rows of 2048|%.2f MB|round %.1f "
        "us (back to back)|||d2d copy %.1f us|floor %.1f us\n",
        T, bytes / 1e6, round_us, copy_us, 2.0 * bytes / 4.3e12 * 1e6);
    std::fflush(stdout);
  }
}

}  // namespace moegraph::cuda_test
