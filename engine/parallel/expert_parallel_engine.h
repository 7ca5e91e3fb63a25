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
#include "engine/parallel/in_process_exchange.h"
#include "engine/parallel/multi_rank_engine.h"

namespace moegraph {

class ExpertParallelEngine final : public MultiRankEngine {
 public:
  static absl::StatusOr<std::unique_ptr<ExpertParallelEngine>> Create(const EngineOptions& options);
  ~ExpertParallelEngine() override;

  absl::Status AcquireSlot(int slot, int max_tokens) override;
  void ReleaseSlot(int slot) override;
  StatePoolStats state_pool() const override;
  int num_slot_groups() const override { return num_ranks(); }
  int slot_group(int slot) const override { return rank_of(slot); }

  absl::Status StepWithOptions(const StepPlan& plan, const ForwardOptions& options,
                               std::vector<float>* logits) override;

  // Global slot s lives on rank s % num_ranks() as its local slot s / num_ranks().
  int rank_of(int slot) const { return slot % num_ranks(); }
  // The routed experts rank r holds: [first, first + count).
  const ExpertPartition& partition() const { return partition_; }

 private:
  ExpertParallelEngine() = default;
  // A rank's error, prefixed so that its local slot numbers can be read.
  absl::Status FromRank(int r, const absl::Status& s) const;

  ExpertPartition partition_;
  // The ranks point at it: the destructor frees it last.
  std::unique_ptr<InProcessExchange> exchange_;
  // Per step, reused: each rank's plan, tokens and logits.
  std::vector<StepPlan> plans_;
  std::vector<std::vector<int32_t>> tokens_;
  std::vector<std::vector<float>> logits_;
  std::vector<bool> seen_slots_;
};

}  // namespace moegraph
