// The expert exchange's data movement on the GPU (engine/parallel/
// in_process_exchange.h): ranks of one process write straight into each
// other's buffers (the same device, or a peer over NVLink), as the CPU
// kernels in kernels/cpu/exchange.h do, with the same row order. Counts are
// written and read on the device; nothing comes back to the host.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace moegraph::cuda {

inline constexpr int kMaxExchangeRanks = 16;

struct ExchangeDispatchArgs {
  const void* x = nullptr;         // [tokens, dim] elements of elem_bytes
  const int32_t* idx = nullptr;    // [tokens, k]
  const int32_t* owner = nullptr;  // [num_experts]
  int tokens = 0, dim = 0, k = 0, num_experts = 0, num_ranks = 0, elem_bytes = 2;
  int32_t* rows = nullptr;  // [tokens, num_ranks] scratch: the row at each destination, -1 none
  void* x_to[kMaxExchangeRanks] = {};
  int32_t* experts_to[kMaxExchangeRanks] = {};
  int32_t* src_to[kMaxExchangeRanks] = {};
  int32_t* count_to[kMaxExchangeRanks] = {};
};

// Row t goes to every rank owning one of idx[t, :] (ids outside
// [0, num_experts) are held by none), rows in increasing t.
cudaError_t LaunchExchangeDispatch(const ExchangeDispatchArgs& a, cudaStream_t stream);

struct ExchangeCombineArgs {
  const void* out = nullptr;            // [max_pairs, dim]
  const int32_t* pair_dst = nullptr;    // [max_pairs]
  const int32_t* pair_count = nullptr;  // [1], read on the device
  const int32_t* src_token = nullptr;   // [num_ranks * capacity]
  const int32_t* counts = nullptr;      // [num_ranks]
  int max_pairs = 0, dim = 0, k = 0, capacity = 0, num_ranks = 0, elem_bytes = 2;
  void* combined[kMaxExchangeRanks] = {};  // per source: [capacity, k, dim]
};

// Pair p goes to combined[s][src_token[row] * k + choice]; pairs naming a
// row that did not arrive are skipped (the CPU op reports them).
cudaError_t LaunchExchangeCombine(const ExchangeCombineArgs& a, cudaStream_t stream);

struct ExchangeMergeArgs {
  const int32_t* idx = nullptr;    // [tokens, k] of the rank's dispatch
  const int32_t* owner = nullptr;  // [num_experts]
  int tokens = 0, k = 0, dim = 0, num_experts = 0, num_ranks = 0, elem_bytes = 2;
  const void* from[kMaxExchangeRanks] = {};  // per rank: [capacity, k, dim] it returned
  void* combined = nullptr;                  // [capacity, k, dim]
};

// combined[t, i] = from[owner(idx[t, i])][t, i]: each choice's output from
// the rank that holds its expert (a transport that returns whole regions).
cudaError_t LaunchExchangeMerge(const ExchangeMergeArgs& a, cudaStream_t stream);

struct ExchangeMeetArgs {
  int rank = 0, num_ranks = 0;
  int32_t* calls = nullptr;                  // [1], this rank's
  const int32_t* inbox = nullptr;            // [num_ranks], this rank's
  int32_t* mailbox[kMaxExchangeRanks] = {};  // per rank: its inbox entry for this rank
  int32_t* stop = nullptr;                   // pinned host: nonzero = give up
  int32_t* gave_up = nullptr;                // pinned host: the meeting that timed out
  long long timeout_ns = 0;
};

// One block: calls += 1, posted into every mailbox after a system-wide
// fence (the ops before it on the stream are complete and visible), then
// waits until every inbox entry has reached it (counters compared modulo
// 2^32) or until stop or the timeout. A rank that times out records the
// meeting's number in gave_up and sets stop, so that its peers' waits (and
// every later meeting) end at once instead of timing out one by one.
cudaError_t LaunchExchangeMeet(const ExchangeMeetArgs& a, cudaStream_t stream);

// Loads the exchange's kernels now. With lazy loading (CUDA's default) a
// kernel's first launch or capture may synchronize the whole context, which
// deadlocks against a peer already waiting on the device at a meeting (the
// CUDA programming guide's "Lazy Loading: concurrent execution"): ranks
// call this before their first meeting.
cudaError_t PreloadExchangeKernels();

}  // namespace moegraph::cuda
