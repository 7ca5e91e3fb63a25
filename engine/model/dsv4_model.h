// The DeepSeek-V4 forward (dsv4.md), written once against the Backend op
// interface: weights uploaded from a WeightStore with every shape checked
// against the config, per-step activations and staging sized once at load,
// and the batched forward over sequence chunks that reads and advances
// SequenceState.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/backend/backend.h"
#include "engine/engine.h"
#include "engine/model/model_config.h"
#include "engine/parallel/layer_placement.h"
#include "engine/state/sequence_state.h"
#include "engine/weights/safetensors.h"
#include "kernels/cuda/sample_row.h"

namespace moegraph {

class ExpertExchange;
class ResidualHandoff;

// One rank's share of the model (docs/expert-parallel.md); the default is
// the whole model on one rank. Pointers are borrowed and outlive the model.
struct ModelShard {
  // ep: only this rank's routed experts are loaded; MoE layers run through it.
  ExpertExchange* exchange = nullptr;
  // layers: the block this rank loads and runs ({0, 0}: all). The first
  // block embeds the tokens, the last one runs the head.
  LayerRange layers;
  // layers: where the residual streams come from and go to.
  ResidualHandoff* handoff = nullptr;
};

struct ForwardOptions {
  // Logits of every token of the step (rows in token order) instead of the
  // last token of each chunk with want_logits.
  bool all_logits = false;
  // When set, receives num_layers + 1 arrays of [T, n, D] floats: entry K is
  // the residual streams after layer K-1 (K = 0: the embeddings).
  std::vector<std::vector<float>>* hidden = nullptr;
  // Pad the step to this many tokens with a scratch-slot chunk (0: none);
  // `hidden` still holds only the plan's tokens.
  int pad_tokens = 0;
};

// How the host half stages a step (the engine's choice; defaults: exactly the
// plan, eager bounds, host logits).
struct StageOptions {
  bool all_logits = false;
  // Pad the step to this many tokens with a scratch-slot chunk (0: no
  // padding); with `decode_rows`, to this many one-token sequences instead.
  int pad_tokens = 0;
  bool decode_rows = false;
  // Pad the logits rows to this many (0: no padding; padded rows repeat row 0).
  int pad_rows = 0;
  // Upper bound of the positions for length-shaped launches; -1: the step's own.
  int max_position = -1;
  // Sample every logits row on the device from the chunks' sampling params.
  bool sample = false;
  // Pipelined steps: slot -> the logits row whose device-sampled id, from the
  // step run just before, a token_from_last_sample chunk of that slot takes
  // (-1: none). Null: the plan may not carry such chunks, and Run takes no
  // tokens from the device (StepShape::feed).
  const std::vector<int>* fed_rows = nullptr;
};

// What a staged step looks like to its device half (graphs are keyed by it).
struct StepShape {
  int tokens = 0;
  int seqs = 0;
  int rows = 0;       // logits rows computed (padded)
  int real_rows = 0;  // of which the plan asked for
  int max_position = 0;
  bool sample = false;
  bool all_logits = false;
  bool feed = false;  // Run takes fed tokens from the last step's samples
};

// The DeepSeek-V4 forward. A step has a host half (Stage: validate the plan,
// map pages, write one pinned staging block) and a device half (Run: every op,
// reading only device buffers, so it can be captured once and replayed).
// docs/decode-step.md describes the buffers and who owns them.
class WeightSource;

class Dsv4Model {
 public:
  // Uploads and checks every weight. `backend` must outlive the model.
  // `max_logit_rows` sizes the logits and sampling buffers (0 = max_step_tokens).
  // `shard`: what of the model this rank holds (ModelShard).
  static absl::StatusOr<std::unique_ptr<Dsv4Model>> Create(
      Backend* backend, const WeightStore& weights, const ModelConfig& config, int max_step_tokens,
      int max_logit_rows = 0, const ModelShard& shard = {});
  // The same from any source of weights (weight_source.h: e.g. random).
  static absl::StatusOr<std::unique_ptr<Dsv4Model>> Create(Backend* backend, WeightSource& weights,
                                                           const ModelConfig& config,
                                                           int max_step_tokens,
                                                           int max_logit_rows = 0,
                                                           const ModelShard& shard = {});
  ~Dsv4Model();
  // Device bytes of the activations and the staging block Create allocates
  // for these sizes (weights, state and backend workspaces not included).
  static size_t DeviceBufferBytes(const ModelConfig& config, int max_step_tokens,
                                  int max_logit_rows, DType activation_dtype);

  const ModelConfig& config() const { return config_; }
  int max_step_tokens() const { return max_tokens_; }
  int max_logit_rows() const { return max_rows_; }
  // Routed experts loaded per layer: all, or this rank's share under expert
  // parallelism.
  int routed_experts_loaded() const;
  // The layers this model runs, and whether it embeds / runs the head.
  LayerRange layers() const { return shard_.layers; }
  bool embeds() const { return shard_.layers.first == 0; }
  bool runs_head() const { return shard_.layers.end == config_.num_layers; }
  // Device bytes of the weights loaded: all, one layer's (0 for a layer
  // outside layers()), the embedding's, and the head's (final norm, hc head,
  // lm head).
  size_t weight_bytes() const;
  size_t layer_weight_bytes(int layer) const { return layer_bytes_[layer]; }
  size_t embed_weight_bytes() const { return embed_bytes_; }
  size_t head_weight_bytes() const { return head_bytes_; }

  // Runs one step over `plan` against `state` (slots acquired there) and
  // appends vocab_size floats per logits row to `logits` (a model without
  // the head appends none). On success every
  // chunk's slot advances by its length; on failure the slots of the plan are
  // in an unspecified state and should be released. Stage + Upload + Run +
  // DownloadLogits.
  absl::Status Forward(const StepPlan& plan, const ForwardOptions& options, SequenceState* state,
                       std::vector<float>* logits);

  // Host half: checks the plan, maps its pages, advances its slots and fills
  // the next pinned staging set (waiting first, on a fence, for the copy that
  // last read that set). Padding rows point at state's scratch slot.
  absl::StatusOr<StepShape> Stage(const StepPlan& plan, const StageOptions& options,
                                  SequenceState* state);
  // Enqueues the one host-to-device copy of the staged set.
  absl::Status Upload();
  // Device half: every op of the step, reading only device buffers sized at
  // load (capturable; `hidden` capture is eager-only).
  absl::Status Run(const StepShape& shape, SequenceState* state,
                   std::vector<std::vector<float>>* hidden = nullptr);
  // Expert parallelism: a step of a rank without tokens, which still serves
  // its experts to the other ranks in every MoE layer's exchange.
  absl::Status RunIdle();
  // After Run: the real logits rows to the host (blocking).
  absl::Status DownloadLogits(const StepShape& shape, std::vector<float>* logits);
  // After Run with sampling: enqueues the ids' copy into the next of two
  // pinned sets, records a fence and returns the set; WaitIds(set) blocks on
  // it and returns the ids (one per real row, valid until the second
  // DownloadIds after this one reuses the set).
  // With `logprobs`, the rows' logprob records come too (SampledLogprobs).
  absl::StatusOr<int> DownloadIds(const StepShape& shape, bool logprobs = false);
  absl::StatusOr<const int32_t*> WaitIds(int set);
  // After WaitIds(set) of a step downloaded with logprobs: one record per row.
  const cuda::SampleLogprobs* SampledLogprobs(const StepShape& shape, int set) const;

  // Piecewise graphs of one step shape: the stretches of Run between the
  // length-shaped ops (indexer top-k, attention), each captured as a graph,
  // and those ops, run eagerly between them at every replay with the step's
  // own max_position (their grids and key splits then fit the real lengths).
  struct Pieces {
    std::vector<int> graphs;  // backend graph ids, one more than `eager`
    std::vector<std::function<absl::Status(const StepMeta&)>> eager;
  };
  absl::StatusOr<std::unique_ptr<Pieces>> CapturePieces(const StepShape& shape,
                                                        SequenceState* state);
  // Replays `pieces` for a staged step of their shape (shape.max_position may
  // differ from the capture's).
  absl::Status ReplayPieces(const Pieces& pieces, const StepShape& shape);

 private:
  struct Layer;
  struct Activations;
  struct Staging;
  Dsv4Model() = default;

  absl::Status LoadWeights(WeightSource& weights);
  // Shapes (data null) of every activation, and the list to allocate.
  static std::vector<Tensor*> PlanActivations(const ModelConfig& config, int64_t max_tokens,
                                              int64_t max_rows, DType act, Activations* out);
  // Offsets of the staging block's sections and its size in words.
  static void LayOutStaging(int64_t max_tokens, int64_t max_rows, Staging* staging);
  absl::Status AllocateActivations();
  absl::Status AllocateStaging();
  absl::Status AttentionBlock(int layer, const StepMeta& meta, SequenceState* state);
  absl::Status MoeBlock(int layer, const Tensor& token_ids);
  StepMeta MetaFor(const StepShape& shape) const;
  // Runs a length-shaped op now, or, while CapturePieces records, ends the
  // current graph there and keeps the op for the replays.
  absl::Status Eager(std::function<absl::Status(const StepMeta&)> op, const StepMeta& meta);
  // The all_logits buffer (tools only), grown on demand outside graphs.
  absl::StatusOr<Tensor> AllLogits(int rows);

  Backend* backend_ = nullptr;
  ModelConfig config_;
  int max_tokens_ = 0;
  int max_rows_ = 0;
  std::vector<Buffer> weight_buffers_;
  std::vector<Buffer> activation_buffers_;
  Buffer all_logits_buffer_;
  std::vector<Layer> layers_;
  Tensor embed_, norm_, hc_head_fn_, hc_head_base_, hc_head_scale_;
  Weight head_;
  Tensor rope_main_, rope_compress_;  // f32 [r/2]
  std::unique_ptr<Activations> act_;
  std::unique_ptr<Staging> staging_;
  Pieces* capturing_ = nullptr;         // set while CapturePieces records
  ExpertExchange* exchange_ = nullptr;  // expert parallelism, else null
  ModelShard shard_;                    // layers resolved: never {0, 0}
  std::vector<size_t> layer_bytes_;     // weight bytes per layer
  size_t embed_bytes_ = 0, head_bytes_ = 0;
};

}  // namespace moegraph
