// The in-process transport of the expert exchange: ranks are threads of one
// process on the CPU backend, each writing its rows straight into its peers'
// buffers (as a peer write over NVLink would) and meeting them at a barrier
// after each phase (docs/expert-parallel.md). Owns every rank's buffers.
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
  int num_experts = 0;                   // E
  int experts_per_token = 0;             // k
  int hidden = 0;                        // D
  int capacity = 0;                      // most tokens a rank dispatches at once (max_step_tokens)
  DType activation_dtype = DType::kF32;  // host memory: f32 only
  std::chrono::milliseconds timeout{60000};  // per barrier
};

class InProcessExchange {
 public:
  static absl::StatusOr<std::unique_ptr<InProcessExchange>> Create(
      const InProcessExchangeOptions& options);
  ~InProcessExchange();

  int num_ranks() const { return static_cast<int>(ranks_.size()); }
  // Rank r's view, owned by this object; use it from rank r's thread only.
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
  std::vector<int> owner_;  // rank of each expert
  RankBarrier barrier_;
  std::vector<std::unique_ptr<Rank>> ranks_;
};

}  // namespace moegraph
