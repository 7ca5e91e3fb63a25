// The Engine implementation for DeepSeek-V4 on any backend: loads config and
// weights, owns the backend, the model and the sequence state. Besides the
// Engine interface it offers StepWithOptions for tools and tests that need
// every token's logits or the per-layer residual streams.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"
#include "engine/engine.h"
#include "engine/model/dsv4_model.h"
#include "engine/state/sequence_state.h"

namespace moegraph {

class Dsv4Engine final : public Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Dsv4Engine>> Create(const EngineOptions& options);
  ~Dsv4Engine() override;

  const ModelInfo& info() const override { return info_; }
  int num_slots() const override { return state_->num_slots(); }
  int max_step_tokens() const override { return model_->max_step_tokens(); }
  absl::Status AcquireSlot(int slot, int max_tokens) override;
  void ReleaseSlot(int slot) override;
  absl::Status Step(const StepPlan& plan, std::vector<float>* logits) override;
  std::unique_ptr<int32_t[], void (*)(int32_t*)> AllocateHostTokens(size_t count) override;
  StatePoolStats state_pool() const override { return state_->pool_stats(); }

  // Step with ForwardOptions (all logits, residual-stream capture).
  absl::Status StepWithOptions(const StepPlan& plan, const ForwardOptions& options,
                               std::vector<float>* logits);
  const ModelConfig& config() const { return model_->config(); }
  // The backend the model runs on (benchmarks read its op timer).
  Backend* backend() const { return backend_.get(); }

 private:
  Dsv4Engine() = default;

  ModelInfo info_;
  // Destroyed in reverse order: state and model free through the backend.
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Dsv4Model> model_;
  std::unique_ptr<SequenceState> state_;
};

}  // namespace moegraph
