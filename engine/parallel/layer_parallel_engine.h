// An Engine over several ranks with layer placement (docs/expert-parallel.md):
// one Dsv4Engine per rank holding a contiguous block of the layers (the first
// also the embedding, the last the head) and every slot's state for its
// layers, joined by an in-process residual handoff, each on its own worker
// thread. Every step runs through all ranks in order.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "engine/parallel/in_process_handoff.h"
#include "engine/parallel/layer_placement.h"
#include "engine/parallel/multi_rank_engine.h"

namespace moegraph {

class LayerParallelEngine final : public MultiRankEngine {
 public:
  // Errors name the field (devices: at most one rank a layer; layout;
  // exchange_timeout_ms).
  static absl::StatusOr<std::unique_ptr<LayerParallelEngine>> Create(const EngineOptions& options);
  ~LayerParallelEngine() override;

  // On every rank: either every rank holds the slot or none does.
  absl::Status AcquireSlot(int slot, int max_tokens) override;
  void ReleaseSlot(int slot) override;
  StatePoolStats state_pool() const override;

  absl::Status StepWithOptions(const StepPlan& plan, const ForwardOptions& options,
                               std::vector<float>* logits) override;

  LayerRange layers(int r) const { return ranks_[r]->model().layers(); }

 private:
  LayerParallelEngine() = default;
  // A rank's error, prefixed with the rank, its device and its layers.
  absl::Status FromRank(int r, const absl::Status& s) const;

  // The ranks point at it: the destructor frees it last.
  std::unique_ptr<InProcessHandoff> handoff_;
  std::vector<std::vector<float>> logits_;  // per rank, reused (only the last one's are kept)
};

}  // namespace moegraph
