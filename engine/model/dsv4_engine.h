// The Engine implementation for DeepSeek-V4 on any backend: loads config and
// weights, owns the backend, the model and the sequence state. Besides the
// Engine interface it offers StepWithOptions for tools and tests that need
// every token's logits or the per-layer residual streams.
#pragma once

#include <array>
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
  // One rank of a multi-rank engine (docs/expert-parallel.md): holds only
  // `shard`'s experts, layers and their state (its pointers must outlive it).
  static absl::StatusOr<std::unique_ptr<Dsv4Engine>> Create(const EngineOptions& options,
                                                            const ModelShard& shard);
  // The model config `options` load: config.json, with the random-weights
  // overrides (num_layers, weight_format) applied.
  static absl::StatusOr<ModelConfig> LoadConfig(const EngineOptions& options);
  ~Dsv4Engine() override;

  const ModelInfo& info() const override { return info_; }
  int num_slots() const override { return state_->num_slots(); }
  int max_step_tokens() const override { return model_->max_step_tokens(); }
  absl::Status AcquireSlot(int slot, int max_tokens) override;
  void ReleaseSlot(int slot) override;
  absl::Status Step(const StepPlan& plan, std::vector<float>* logits) override;
  absl::Status StepAndSample(const StepPlan& plan, StepResult* result) override;
  bool SamplesOnDevice(const SeqChunk& chunk) const override;
  // Engines that sample on their backend run ahead (docs/decode-step.md).
  bool pipelines() const override { return device_sampler_ && pipeline_steps_; }
  absl::Status Launch(const StepPlan& plan) override;
  absl::Status Collect(StepResult* result) override;
  std::unique_ptr<int32_t[], void (*)(int32_t*)> AllocateHostTokens(size_t count) override;
  StatePoolStats state_pool() const override { return state_->pool_stats(); }
  std::vector<DeviceMemoryStats> device_memory() const override;

  // Step with ForwardOptions (all logits, residual-stream capture).
  absl::Status StepWithOptions(const StepPlan& plan, const ForwardOptions& options,
                               std::vector<float>* logits);
  // Expert parallelism: this rank's part of a step in which it has no tokens.
  absl::Status StepIdle() { return model_->RunIdle(); }
  // Expert parallelism over an exchange whose every call moves the same rows
  // on every rank (ExpertExchange::equal_rows): the tokens this rank's step
  // would carry alone (its bucket; 0 for no sequences), and the step padded
  // to exactly `tokens` (the most of any rank; an empty plan too): in the
  // decode graph of that size where there is one, eager (Forward) when
  // `options` asks for every token's logits or the residual streams.
  int PaddedTokens(const StepPlan& plan) const;
  absl::Status StepPaddedTo(const StepPlan& plan, int tokens, const ForwardOptions& options,
                            std::vector<float>* logits);
  const ModelConfig& config() const { return model_->config(); }
  const Dsv4Model& model() const { return *model_; }
  // The backend the model runs on (benchmarks read its op timer).
  Backend* backend() const { return backend_.get(); }
  SequenceState* state() const { return state_.get(); }
  // "off" or "full": what decode steps do (EngineOptions::graphs resolved).
  const std::string& graph_mode() const { return graph_mode_; }
  // Decode batch buckets with a captured graph (empty when graphs are off).
  const std::vector<int>& decode_buckets() const { return decode_buckets_; }
  // What the last Step did: "full" (a graph replay) or "eager", and its bucket
  // (padded batch or token count; 0 when the step was not padded).
  const char* last_step_mode() const override { return last_mode_; }
  int last_step_bucket() const override { return last_bucket_; }
  // Host microseconds the last device-sampled step spent before waiting for
  // its ids (planning, staging, enqueueing): without pipelining, the time the
  // GPU sits idle between two steps' work.
  double last_host_us() const { return last_host_us_; }
  // Warms every bucket up (tuning its GEMMs), freezes the workspaces and
  // captures the decode graphs (backends with graphs). Logs progress. Create
  // runs it, except on a rank of several: its warm-up steps meet the other
  // ranks at every exchange, so their engine runs it on all ranks at once.
  absl::Status Prepare();

 private:
  // A step enqueued on the device whose results the host has not read.
  struct Launched {
    StepShape shape;
    int ids_set = -1;  // device-sampled: the pinned ids set; -1: `logits` holds the rows
    bool logprobs = false;
    std::vector<const sampling::SamplingParams*> row_params;  // device-sampled rows' params
    std::vector<float> logits;
    const char* mode = "eager";
    int bucket = 0;
  };

  Dsv4Engine() = default;
  // Stages and enqueues one step, padded to buckets on backends that tune or
  // capture per shape, or to exactly `pad_to` tokens when it is set.
  // Device-sampled (want_sample and the backend samples): returns once the
  // ids' copy is enqueued; otherwise after the logits rows reached the host.
  absl::Status LaunchStep(const StepPlan& plan, bool want_sample, Launched* step, int pad_to = 0);
  // Waits for a launched step and fills `result` (sampled ids or logits rows).
  absl::Status FinishStep(Launched& step, StepResult* result);
  // One step, launched and finished (no step may be in flight).
  absl::Status RunStep(const StepPlan& plan, bool want_sample, StepResult* result, int pad_to = 0);
  // The decode bucket a step of one-token sequences runs in (index into
  // decode_buckets_; their size when none holds it): the smallest holding
  // its sequences, or the one of exactly `pad_to` tokens when that is set.
  size_t DecodeBucket(const StepPlan& plan, int pad_to) const;
  bool CanSampleOnDevice(const StepPlan& plan) const;
  // What every step (and every warm-up and capture) stages with.
  StageOptions BaseStageOptions() const;

  ModelInfo info_;
  // Destroyed in reverse order: state and model free through the backend.
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Dsv4Model> model_;
  std::unique_ptr<SequenceState> state_;
  bool bucketed_ = false;  // pad steps to buckets (CUDA: shapes tuned at load)
  // The backend samples (staged params in every step): CUDA, or the CPU with
  // EngineOptions::cpu_backend_sampling.
  bool device_sampler_ = false;
  bool pipeline_steps_ = true;  // EngineOptions::pipeline_steps
  std::string graph_mode_ = "off";
  std::vector<int> decode_buckets_;  // batch sizes with a captured graph
  std::vector<int> decode_graphs_;   // their graph ids ("full")
  std::vector<std::unique_ptr<Dsv4Model::Pieces>> decode_pieces_;  // theirs ("piecewise")
  std::vector<int> token_buckets_;  // padded token counts of eager steps
  std::vector<int> row_buckets_;    // padded logits rows of eager steps
  const char* last_mode_ = "eager";
  int last_bucket_ = 0;
  double last_host_us_ = 0;
  // Launched and not collected, oldest first at inflight_head_ (records reused).
  std::array<Launched, 2> inflight_;
  int inflight_head_ = 0, inflight_count_ = 0;
  Launched step_;  // RunStep's record
  // Slot -> its row in the last launched step's device-sampled ids (-1:
  // none), for the next step's token_from_last_sample chunks; fed_slots_
  // lists the entries set.
  std::vector<int> fed_rows_;
  std::vector<int> fed_slots_;
};

}  // namespace moegraph
