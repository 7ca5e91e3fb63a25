// The in-process transport of the expert exchange: ranks are threads of one
// process, each on its own backend (CPU ranks, or CUDA ranks on one GPU or
// on peers of one host), each writing its rows straight into its peers'
// buffers with its backend's exchange ops (as a peer write over NVLink
// would) and meeting them at a barrier after each phase
// (docs/expert-parallel.md). Every rank's buffers live on its own backend.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend/tensor.h"
#include "engine/parallel/expert_exchange.h"
#include "engine/parallel/rank_barrier.h"

namespace moegraph {

struct InProcessExchangeOptions {
  int num_ranks = 1;
  int num_experts = 0;        // E
  int experts_per_token = 0;  // k
  int hidden = 0;             // D
  int capacity = 0;           // most tokens a rank dispatches at once (max_step_tokens)
  std::chrono::milliseconds timeout{60000};  // per barrier
};

class InProcessExchange {
 public:
  static absl::StatusOr<std::unique_ptr<InProcessExchange>> Create(
      const InProcessExchangeOptions& options);
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
  explicit InProcessExchange(const InProcessExchangeOptions& options);

  InProcessExchangeOptions options_;
  ExpertPartition partition_;
  std::vector<int32_t> owner_;  // rank of each expert
  RankBarrier barrier_;
  std::vector<std::unique_ptr<Rank>> ranks_;
};

}  // namespace moegraph
