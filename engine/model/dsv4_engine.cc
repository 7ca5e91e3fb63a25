#include "engine/model/dsv4_engine.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "engine/backend/backend_factory.h"
#include "engine/common/status_macros.h"
#include "engine/weights/safetensors.h"

namespace moegraph {

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<Dsv4Engine> engine, Dsv4Engine::Create(options));
  return std::unique_ptr<Engine>(std::move(engine));
}

Dsv4Engine::~Dsv4Engine() {
  state_.reset();
  model_.reset();
  backend_.reset();
}

absl::StatusOr<std::unique_ptr<Dsv4Engine>> Dsv4Engine::Create(const EngineOptions& options) {
  if (options.num_slots <= 0 || options.max_step_tokens <= 0 || options.context_limit < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "engine options: num_slots and max_step_tokens must be positive, context_limit >= 0 "
        "(got ",
        options.num_slots, ", ", options.max_step_tokens, ", ", options.context_limit, ")"));
  }
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(options.model_dir));
  ASSIGN_OR_RETURN(std::unique_ptr<WeightStore> weights, WeightStore::Open(options.model_dir));
  std::unique_ptr<Dsv4Engine> e(new Dsv4Engine());
  ASSIGN_OR_RETURN(e->backend_, CreateBackend(options.device));
  ASSIGN_OR_RETURN(e->model_,
                   Dsv4Model::Create(e->backend_.get(), *weights, config, options.max_step_tokens));
  SequenceStateOptions so;
  so.num_slots = options.num_slots;
  so.context_limit =
      options.context_limit > 0 ? options.context_limit : config.max_position_embeddings;
  so.pool_tokens = options.state_pool_tokens;
  ASSIGN_OR_RETURN(e->state_, SequenceState::Create(e->backend_.get(), config, so));

  ModelInfo& info = e->info_;
  info.name = std::filesystem::path(options.model_dir).lexically_normal().filename().string();
  if (info.name.empty()) {
    info.name = std::filesystem::path(options.model_dir)
                    .lexically_normal()
                    .parent_path()
                    .filename()
                    .string();
  }
  info.model_type = config.model_type;
  info.vocab_size = config.vocab_size;
  info.context_limit = so.context_limit;
  info.bos_token_id = config.bos_token_id;
  info.eos_token_ids = config.eos_token_ids;
  info.num_layers = config.num_layers;
  info.hidden_size = config.hidden_size;
  info.device = e->backend_->name();
  info.layout = "1 device, all layers, all experts";
  return e;
}

absl::Status Dsv4Engine::AcquireSlot(int slot, int max_tokens) {
  return state_->Acquire(slot, max_tokens);
}

void Dsv4Engine::ReleaseSlot(int slot) { state_->Release(slot); }

absl::Status Dsv4Engine::Step(const StepPlan& plan, std::vector<float>* logits) {
  return model_->Forward(plan, ForwardOptions{}, state_.get(), logits);
}

absl::Status Dsv4Engine::StepWithOptions(const StepPlan& plan, const ForwardOptions& options,
                                         std::vector<float>* logits) {
  return model_->Forward(plan, options, state_.get(), logits);
}

std::unique_ptr<int32_t[], void (*)(int32_t*)> Dsv4Engine::AllocateHostTokens(size_t count) {
  return std::unique_ptr<int32_t[], void (*)(int32_t*)>(new int32_t[count],
                                                        [](int32_t* p) { delete[] p; });
}

}  // namespace moegraph
