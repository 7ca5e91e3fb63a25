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
#include "engine/model/dsv4_engine.h"
#include "engine/parallel/in_process_handoff.h"
#include "engine/parallel/layer_placement.h"
#include "engine/parallel/rank_worker.h"

namespace moegraph {

class LayerParallelEngine final : public Engine {
 public:
  // Errors name the field (devices: at most one rank a layer; layout;
  // exchange_timeout_ms).
  static absl::StatusOr<std::unique_ptr<LayerParallelEngine>> Create(const EngineOptions& options);
  ~LayerParallelEngine() override;

  const ModelInfo& info() const override { return info_; }
  int num_slots() const override { return num_slots_; }
  int max_step_tokens() const override { return max_step_tokens_; }
  // On every rank: either every rank holds the slot or none does.
  absl::Status AcquireSlot(int slot, int max_tokens) override;
  void ReleaseSlot(int slot) override;
  absl::Status Step(const StepPlan& plan, std::vector<float>* logits) override;
  std::unique_ptr<int32_t[], void (*)(int32_t*)> AllocateHostTokens(size_t count) override;
  StatePoolStats state_pool() const override;

  // Step with ForwardOptions::all_logits (per-layer capture is single-rank only).
  absl::Status StepWithOptions(const StepPlan& plan, const ForwardOptions& options,
                               std::vector<float>* logits);

  int num_ranks() const { return static_cast<int>(ranks_.size()); }
  Dsv4Engine* rank(int r) const { return ranks_[r].get(); }
  LayerRange layers(int r) const { return ranks_[r]->model().layers(); }

 private:
  LayerParallelEngine() = default;
  // A rank's error, prefixed with the rank, its device and its layers.
  absl::Status FromRank(int r, const absl::Status& s) const;

  ModelInfo info_;
  std::vector<std::string> devices_;
  int num_slots_ = 0;
  int max_step_tokens_ = 0;
  std::chrono::milliseconds step_timeout_{0};
  // Destroyed in reverse order: workers stop before the ranks they drive,
  // and ranks go before the handoff they point at.
  std::unique_ptr<InProcessHandoff> handoff_;
  std::vector<std::unique_ptr<Dsv4Engine>> ranks_;
  std::vector<std::unique_ptr<RankWorker>> workers_;
  std::vector<std::vector<float>> logits_;  // per rank, reused (only the last one's are kept)
  absl::Status broken_;                     // set when a rank did not finish a step: no more steps
};

}  // namespace moegraph
