// An Engine over several ranks with expert parallelism (docs/expert-parallel.md):
// one Dsv4Engine per rank holding its share of the routed experts and of the
// slots, joined by an in-process expert exchange, each on its own worker
// thread. Every step runs on every rank (lockstep), idle ranks with zero tokens.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "engine/model/dsv4_engine.h"
#include "engine/parallel/in_process_exchange.h"
#include "engine/parallel/rank_worker.h"

namespace moegraph {

class ExpertParallelEngine final : public Engine {
 public:
  static absl::StatusOr<std::unique_ptr<ExpertParallelEngine>> Create(const EngineOptions& options);
  ~ExpertParallelEngine() override;

  const ModelInfo& info() const override { return info_; }
  int num_slots() const override { return num_slots_; }
  int max_step_tokens() const override { return max_step_tokens_; }
  absl::Status AcquireSlot(int slot, int max_tokens) override;
  void ReleaseSlot(int slot) override;
  absl::Status Step(const StepPlan& plan, std::vector<float>* logits) override;
  std::unique_ptr<int32_t[], void (*)(int32_t*)> AllocateHostTokens(size_t count) override;
  StatePoolStats state_pool() const override;
  int num_slot_groups() const override { return num_ranks(); }
  int slot_group(int slot) const override { return rank_of(slot); }

  // Step with ForwardOptions::all_logits (per-layer capture is single-rank only).
  absl::Status StepWithOptions(const StepPlan& plan, const ForwardOptions& options,
                               std::vector<float>* logits);

  int num_ranks() const { return static_cast<int>(ranks_.size()); }
  // Global slot s lives on rank s % num_ranks() as its local slot s / num_ranks().
  int rank_of(int slot) const { return slot % num_ranks(); }
  Dsv4Engine* rank(int r) const { return ranks_[r].get(); }
  // The routed experts rank r holds: [first, first + count).
  const ExpertPartition& partition() const { return partition_; }

 private:
  ExpertParallelEngine() = default;
  // A rank's error, prefixed so that its local slot numbers can be read.
  absl::Status FromRank(int r, const absl::Status& s) const;

  ModelInfo info_;
  std::vector<std::string> devices_;
  int num_slots_ = 0;
  int max_step_tokens_ = 0;
  std::chrono::milliseconds step_timeout_{0};
  ExpertPartition partition_;
  // Destroyed in reverse order: workers stop before the ranks they drive,
  // and ranks go before the exchange they point at.
  std::unique_ptr<InProcessExchange> exchange_;
  std::vector<std::unique_ptr<Dsv4Engine>> ranks_;
  std::vector<std::unique_ptr<RankWorker>> workers_;
  // Per step, reused: each rank's plan, tokens and logits.
  std::vector<StepPlan> plans_;
  std::vector<std::vector<int32_t>> tokens_;
  std::vector<std::vector<float>> logits_;
  std::vector<bool> seen_slots_;
  absl::Status broken_;  // set when a rank did not finish a step: no more steps
};

}  // namespace moegraph
