// One rank's view of the expert-parallel exchange (docs/expert-parallel.md):
// dispatch sends each token once to every rank holding one of its experts,
// combine returns the experts' outputs to the token's own rank. Buffers have
// fixed capacities sized at creation and counts that live in device memory,
// so a transport can sit inside a captured step. Every call is collective:
// all ranks make the same calls, in the same order, every step (a rank
// without tokens dispatches zero rows).
#pragma once

#include <chrono>
#include <vector>

#include "absl/status/status.h"
#include "engine/backend/backend.h"
#include "engine/backend/tensor.h"
#include "engine/parallel/expert_partition.h"

namespace moegraph {

// What Dispatch delivered to this rank. Source rank r owns rows
// [r * capacity, r * capacity + counts[r]) of each tensor.
struct DispatchedRows {
  int capacity = 0;  // rows per source rank (the step token limit)
  Tensor x;          // act [num_ranks * capacity, D]
  Tensor experts;    // i32 [num_ranks * capacity, k]: global expert id, -1 = held elsewhere
  Tensor src_token;  // i32 [num_ranks * capacity]: the row's token index on its rank
  Tensor counts;     // i32 [num_ranks]
};

// Where this rank's expert outputs go before Combine: the expert GEMM writes
// here directly (Backend::MoeExpertPairs), one row per (row, choice) pair.
struct CombineSend {
  Tensor out;         // act [pair_capacity, D]
  Tensor pair_dst;    // i32 [pair_capacity]: received row * k + choice
  Tensor pair_count;  // i32 [1]
};

// What every transport is sized by.
struct ExchangeOptions {
  int num_ranks = 1;
  int num_experts = 0;        // E
  int experts_per_token = 0;  // k
  int hidden = 0;             // D
  int capacity = 0;           // most tokens a rank dispatches at once (max_step_tokens)
  std::chrono::milliseconds timeout{60000};  // per barrier (in-process)
  // Every rank dispatches the same number of rows in each call
  // (ExpertExchange::equal_rows); the in-process transport checks it when
  // its ranks meet on the host.
  bool equal_rows = false;
  // In-process: the ranks meet on the device (Backend::ExchangeMeet: CUDA
  // ranks), not at host barriers after stream syncs, so that the exchange
  // can sit inside their captured graphs.
  bool device_meetings = false;
};

// One rank's buffers every transport has, on the rank's backend: the rows it
// receives, the pairs its experts write, what Combine returns, and the
// exchange ops' row scratch and expert-owner table.
struct RankBuffers {
  DispatchedRows received;  // [R * capacity] rows
  CombineSend send;         // R * capacity * min(k, local experts) pairs
  Tensor combined;          // act [capacity, k, D]
  Tensor rows_scratch;      // i32 [R * capacity]
  Tensor owner;             // i32 [E]: the rank of each expert
  std::vector<Buffer> memory;
};
absl::Status AllocateRankBuffers(Backend& backend, const ExchangeOptions& o, int rank,
                                 RankBuffers* out);
// R regions of `capacity` rows (a transport's send side), into `memory`.
absl::StatusOr<DispatchedRows> AllocateDispatchedRows(Backend& backend, const ExchangeOptions& o,
                                                      std::vector<Buffer>* memory);

// A group of ranks' communication resources that can be torn down while a
// rank is blocked in them (NCCL communicators): Abort releases the blocked
// ranks with an error; nothing works afterwards.
class ExchangeGroup {
 public:
  virtual ~ExchangeGroup() = default;
  virtual void Abort() = 0;
};

class ExpertExchange {
 public:
  virtual ~ExpertExchange() = default;

  virtual int rank() const = 0;
  virtual const ExpertPartition& partition() const = 0;
  // Allocates this rank's buffers on `backend` (the rank's model's), whose
  // ops move its data; once, before any other call, from the creating thread.
  virtual absl::Status Bind(Backend* backend) = 0;
  // Most tokens one rank may dispatch in one call.
  virtual int capacity() const = 0;
  // Whether every rank must dispatch the same number of rows (padding rows
  // included) in each call: a transport whose messages are sized by the
  // call's rows and not by the capacity (NCCL) needs the ranks to agree.
  virtual bool equal_rows() const = 0;

  // Sends row t of x (act [T, D]) once to each rank holding one of
  // idx[t, :] (i32 [T, k]); T may be 0. Returns when every rank's rows for
  // this rank have arrived in received().
  virtual absl::Status Dispatch(const Tensor& x, const Tensor& idx) = 0;
  virtual const DispatchedRows& received() const = 0;
  virtual const CombineSend& combine_send() const = 0;
  // Returns every pair of combine_send() to its token's rank. Afterwards
  // combined() row t * k + i holds the output of expert idx[t, i] of this
  // rank's last Dispatch.
  virtual absl::Status Combine() = 0;
  // act [capacity, k, D]
  virtual const Tensor& combined() const = 0;

  // After this rank's step, from its thread: waits for its device work and
  // returns what the device recorded (a peer that never arrived at a
  // meeting on the device, an abort); OK for transports without such state.
  virtual absl::Status Finish() { return absl::OkStatus(); }

  // Marks the exchange failed (this rank cannot take part in the step): the
  // other ranks' pending and later calls return an error naming this rank
  // instead of waiting for it.
  virtual void Abort(const absl::Status& why) = 0;
};

}  // namespace moegraph
