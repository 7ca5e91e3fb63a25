// An Engine over several ranks with expert parallelism (docs/expert-parallel.md):
// one Dsv4Engine per rank holding its share of the routed experts and of the
// slots, joined by an in-process expert exchange, each on its own worker
// thread. Every step runs on every rank (lockstep), idle ranks with zero tokens.
// With `ep+layers` the ranks form a grid: blocks of layers, each block's
// ranks expert-parallel among themselves, each column of ranks (one per
// block) a layer-placement pipeline holding its share of the slots.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "engine/parallel/in_process_exchange.h"
#include "engine/parallel/in_process_handoff.h"
#include "engine/parallel/multi_rank_engine.h"

namespace moegraph {

class ExpertParallelEngine final : public MultiRankEngine {
 public:
  static absl::StatusOr<std::unique_ptr<ExpertParallelEngine>> Create(const EngineOptions& options);
  ~ExpertParallelEngine() override;

  absl::Status AcquireSlot(int slot, int max_tokens) override;
  void ReleaseSlot(int slot) override;
  StatePoolStats state_pool() const override;
  int num_slot_groups() const override { return width(); }
  int slot_group(int slot) const override { return rank_of(slot); }

  absl::Status StepWithOptions(const StepPlan& plan, const ForwardOptions& options,
                               std::vector<float>* logits) override;

  // Ranks per block (all of them with `ep`), and blocks of layers (1 with
  // `ep`). Rank b * width() + e is block b's EP rank e.
  int width() const { return num_ranks() / blocks_; }
  int blocks() const { return blocks_; }
  // Global slot s lives on EP rank s % width() (of every block) as its local
  // slot s / width().
  int rank_of(int slot) const { return slot % width(); }
  // The routed experts EP rank e of a block holds: [first, first + count).
  const ExpertPartition& partition() const { return partition_; }

 private:
  ExpertParallelEngine() = default;
  // A rank's error, prefixed so that its local slot numbers can be read.
  absl::Status FromRank(int r, const absl::Status& s) const;
  // Every transport's state: the first failure, and clearing them all.
  struct Transports {
    ExpertParallelEngine* engine;
    absl::Status status() const;
    void Reset();
  };

  int blocks_ = 1;
  ExpertPartition partition_;
  // The ranks point at them: the destructor frees them last. One exchange a
  // block; with several blocks, one handoff a column.
  std::vector<std::unique_ptr<InProcessExchange>> exchanges_;
  std::vector<std::unique_ptr<InProcessHandoff>> handoffs_;
  // transport nccl: one communicator a block (NcclComms) and each rank's
  // exchange (rank b * width() + e).
  std::vector<std::unique_ptr<ExchangeGroup>> nccl_comms_;
  std::vector<std::unique_ptr<ExpertExchange>> nccl_exchanges_;
  std::string transport_ = "in-process";
  bool captured_ = false;  // the ranks' decode steps may run in graphs
  // The exchange moves the same rows on every rank (ExpertExchange::
  // equal_rows): every rank's step is padded to one token count.
  bool equal_rows_ = false;
  // Block b's EP rank e's view of its block's exchange.
  ExpertExchange* exchange(int b, int e) const {
    return nccl_exchanges_.empty() ? exchanges_[b]->rank(e)
                                   : nccl_exchanges_[b * width() + e].get();
  }
  // Per step, reused: each column's plan and tokens, each rank's logits.
  std::vector<StepPlan> plans_;
  std::vector<std::vector<int32_t>> tokens_;
  std::vector<std::vector<float>> logits_;
  std::vector<bool> seen_slots_;
};

}  // namespace moegraph
