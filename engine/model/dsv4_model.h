// The DeepSeek-V4 forward (dsv4.md), written once against the Backend op
// interface: weights uploaded from a WeightStore with every shape checked
// against the config, per-step activations in one arena, and the batched
// forward over sequence chunks that reads and advances SequenceState.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/backend/backend.h"
#include "engine/engine.h"
#include "engine/model/model_config.h"
#include "engine/state/sequence_state.h"
#include "engine/weights/safetensors.h"

namespace moegraph {

struct ForwardOptions {
  // Logits of every token of the step (rows in token order) instead of the
  // last token of each chunk with want_logits.
  bool all_logits = false;
  // When set, receives num_layers + 1 arrays of [T, n, D] floats: entry K is
  // the residual streams after layer K-1 (K = 0: the embeddings).
  std::vector<std::vector<float>>* hidden = nullptr;
};

class Dsv4Model {
 public:
  // Uploads and checks every weight. `backend` must outlive the model.
  static absl::StatusOr<std::unique_ptr<Dsv4Model>> Create(Backend* backend,
                                                           const WeightStore& weights,
                                                           const ModelConfig& config,
                                                           int max_step_tokens);
  ~Dsv4Model();

  const ModelConfig& config() const { return config_; }
  int max_step_tokens() const { return max_tokens_; }

  // Runs one step over `plan` against `state` (slots acquired there) and
  // appends vocab_size floats per logits row to `logits`. On success every
  // chunk's slot advances by its length; on failure the slots of the plan are
  // in an unspecified state and should be released.
  absl::Status Forward(const StepPlan& plan, const ForwardOptions& options, SequenceState* state,
                       std::vector<float>* logits);

 private:
  struct Layer;
  struct Activations;
  Dsv4Model() = default;

  absl::Status LoadWeights(const WeightStore& weights);
  absl::Status AllocateActivations();
  absl::Status AttentionBlock(int layer, const StepMeta& meta, SequenceState* state);
  absl::Status MoeBlock(int layer, const Tensor& token_ids);
  absl::Status EnsureLogitsRows(int rows);

  Backend* backend_ = nullptr;
  ModelConfig config_;
  int max_tokens_ = 0;
  std::vector<Buffer> weight_buffers_;
  std::vector<Buffer> activation_buffers_;
  std::vector<Layer> layers_;
  Tensor embed_, head_, norm_, hc_head_fn_, hc_head_base_, hc_head_scale_;
  Tensor rope_main_, rope_compress_;  // f32 [r/2]
  std::unique_ptr<Activations> act_;
};

}  // namespace moegraph
