// The in-process transport of the expert exchange: ranks are threads of one
// process, each on its own backend (CPU ranks, or CUDA ranks on one GPU or
// on peers of one host), each writing its rows straight into its peers'
// buffers with its backend's exchange ops (as a peer write over NVLink
// would) and meeting them after each phase (docs/expert-parallel.md): at a
// host barrier after a stream sync, or, with `device_meetings` (CUDA ranks),
// on the device (Backend::ExchangeMeet), which needs no host and so sits
// inside captured graphs. Every rank's buffers live on its own backend.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend/tensor.h"
#include "engine/parallel/expert_exchange.h"
#include "engine/parallel/rank_barrier.h"

namespace moegraph {

class InProcessExchange {
 public:
  static absl::StatusOr<std::unique_ptr<InProcessExchange>> Create(const ExchangeOptions& options);
  // The ranks' backends must outlive it (their buffers are freed here).
  ~InProcessExchange();

  int num_ranks() const { return static_cast<int>(ranks_.size()); }
  // Rank r's view, owned by this object; use it from rank r's thread only
  // (after every rank is bound).
  ExpertExchange* rank(int r);
  // Why the exchange failed (OK when it has not).
  absl::Status status() const { return barrier_.status(); }
  // Clears a failure; only while no rank is inside a call. With device
  // meetings it also waits for every rank's device work (releasing any
  // still waiting) and zeroes the meeting counters.
  void Reset();

 private:
  class Rank;
  explicit InProcessExchange(const ExchangeOptions& options);
  // The device meetings' control words (RankMeeting::control), pinned, from
  // the first rank bound.
  int32_t* control() const { return static_cast<int32_t*>(control_.get()); }
  absl::Status ResetMeetings();

  ExchangeOptions options_;
  ExpertPartition partition_;
  RankBarrier barrier_;
  std::vector<int64_t> rows_;  // each rank's rows in its last Dispatch
  std::vector<std::unique_ptr<Rank>> ranks_;
  HostMemory control_{nullptr, [](void*) {}};  // freed before the ranks' backends
};

}  // namespace moegraph
