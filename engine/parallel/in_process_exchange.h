// The in-process transport of the expert exchange: ranks are threads of one
// process, each on its own backend (CPU ranks, or CUDA ranks on one GPU or
// on peers of one host), each writing its rows straight into its peers'
// buffers with its backend's exchange ops (as a peer write over NVLink
// would) and meeting them at a barrier after each phase
// (docs/expert-parallel.md). Every rank's buffers live on its own backend.
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
  // Clears a failure; only while no rank is inside a call.
  void Reset() { barrier_.Reset(); }

 private:
  class Rank;
  explicit InProcessExchange(const ExchangeOptions& options);

  ExchangeOptions options_;
  ExpertPartition partition_;
  RankBarrier barrier_;
  std::vector<int64_t> rows_;  // each rank's rows in its last Dispatch
  std::vector<std::unique_ptr<Rank>> ranks_;
};

}  // namespace moegraph
