#include "engine/model/dsv4_engine.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/backend/backend_factory.h"
#include "engine/common/logging.h"
#include "engine/common/status_macros.h"
#include "engine/model/weight_source.h"
#include "engine/parallel/expert_exchange.h"
#include "engine/parallel/multi_rank_engine.h"
#include "engine/weights/safetensors.h"
#include "kernels/cuda/sample_row.h"

namespace moegraph {

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options) {
  if (!options.devices.empty()) return CreateMultiRankEngine(options);
  ASSIGN_OR_RETURN(std::unique_ptr<Dsv4Engine> engine, Dsv4Engine::Create(options));
  return std::unique_ptr<Engine>(std::move(engine));
}

Dsv4Engine::~Dsv4Engine() {
  state_.reset();
  model_.reset();
  backend_.reset();
}

absl::StatusOr<ModelConfig> Dsv4Engine::LoadConfig(const EngineOptions& o) {
  if (!o.random_weights && (o.num_layers != 0 || !o.weight_format.empty())) {
    return absl::InvalidArgumentError(
        "engine options: num_layers and weight_format apply to random weights only");
  }
  const std::filesystem::path path(o.model_dir);
  ModelConfig c;
  if (o.random_weights && path.extension() == ".json" && std::filesystem::is_regular_file(path)) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    absl::StatusOr<ModelConfig> parsed = ParseModelConfig(text.str());
    if (!parsed.ok()) {
      return absl::Status(parsed.status().code(),
                          absl::StrCat(o.model_dir, ": ", parsed.status().message()));
    }
    c = *std::move(parsed);
  } else {
    ASSIGN_OR_RETURN(c, LoadModelConfig(o.model_dir));
  }
  if (o.num_layers < 0 || o.num_layers > c.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_layers: expected 0 (all) to ", c.num_layers, ", got ", o.num_layers));
  }
  if (o.num_layers > 0) {
    c.num_layers = o.num_layers;
    c.layer_types.resize(o.num_layers);
    c.mlp_types.resize(o.num_layers);
  }
  if (!o.weight_format.empty()) {
    const auto* f =
        std::find(std::begin(kWeightFormats), std::end(kWeightFormats), o.weight_format);
    if (f == std::end(kWeightFormats)) {
      return absl::InvalidArgumentError(
          absl::StrCat("weight_format: '", o.weight_format, "' is not one of bf16, fp8, fp4"));
    }
    c.quant = QuantConfig{};
    if (o.weight_format != "bf16") {
      c.quant.fp8 = true;
      c.quant.pow2_scales = true;  // scale_fmt ue8m0, as released
      c.quant.expert_dtype = o.weight_format;
    }
  }
  return c;
}

absl::StatusOr<std::unique_ptr<Dsv4Engine>> Dsv4Engine::Create(const EngineOptions& options) {
  return Create(options, ModelShard{});
}

absl::StatusOr<std::unique_ptr<Dsv4Engine>> Dsv4Engine::Create(const EngineOptions& options,
                                                               const ModelShard& shard) {
  if (options.num_slots <= 0 || options.max_step_tokens <= 0 || options.context_limit < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "engine options: num_slots and max_step_tokens must be positive, context_limit >= 0 "
        "(got ",
        options.num_slots, ", ", options.max_step_tokens, ", ", options.context_limit, ")"));
  }
  ASSIGN_OR_RETURN(ModelConfig config, LoadConfig(options));
  std::unique_ptr<WeightStore> weights;
  std::unique_ptr<WeightSource> source;
  if (options.random_weights) {
    source = RandomSource(config, options.random_seed);
  } else {
    ASSIGN_OR_RETURN(weights, WeightStore::Open(options.model_dir));
    if (!weights->has_data()) return absl::InternalError("weight store without data");
    source = CheckpointSource(*weights, config);
  }
  std::unique_ptr<Dsv4Engine> e(new Dsv4Engine());
  const auto* mode = std::find(std::begin(kGraphModes), std::end(kGraphModes), options.graphs);
  if (mode == std::end(kGraphModes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("graphs: '", options.graphs, "' is not one of auto, off, piecewise, full"));
  }
  if (options.w8a8_min_rows < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("w8a8_min_rows: ", options.w8a8_min_rows, " is not >= 0 (0 = never W8A8)"));
  }
  ASSIGN_OR_RETURN(
      e->backend_,
      CreateBackend(options.device, BackendOptions{.w8a8_min_rows = options.w8a8_min_rows}));
  Backend& backend = *e->backend_;
  // Backends with graphs tune or capture per shape: their steps are padded to
  // buckets so that every shape is known at load.
  e->bucketed_ = backend.supports_graphs();
  if ((options.graphs == "full" || options.graphs == "piecewise") && !backend.supports_graphs()) {
    return absl::InvalidArgumentError(absl::StrCat("graphs: '", options.graphs,
                                                   "' needs a backend with CUDA graphs; ",
                                                   backend.name(), " has none (use off)"));
  }
  e->graph_mode_ = options.graphs == "auto" ? (e->bucketed_ ? "full" : "off") : options.graphs;
  e->device_sampler_ = options.device_sampling && (e->bucketed_ || options.cpu_backend_sampling);
  e->pipeline_steps_ = options.pipeline_steps;
  for (Launched* l : {&e->step_, &e->inflight_[0], &e->inflight_[1]})
    l->row_params.reserve(static_cast<size_t>(options.num_slots));
  e->fed_rows_.assign(static_cast<size_t>(options.num_slots), -1);
  e->fed_slots_.reserve(static_cast<size_t>(options.num_slots));
  const int max_rows = std::min(options.num_slots, options.max_step_tokens);
  ASSIGN_OR_RETURN(e->model_, Dsv4Model::Create(&backend, *source, config, options.max_step_tokens,
                                                max_rows, shard));
  source.reset();
  weights.reset();
  SequenceStateOptions so;
  so.num_slots = options.num_slots;
  so.context_limit =
      options.context_limit > 0 ? options.context_limit : config.max_position_embeddings;
  so.pool_tokens = options.state_pool_tokens;
  // Padded steps compute their padding rows in the scratch slot.
  const bool padded_ranks = shard.exchange != nullptr && shard.exchange->equal_rows();
  so.scratch_tokens = e->bucketed_ || padded_ranks ? options.max_step_tokens : 0;
  so.first_layer = e->model_->layers().first;
  so.end_layer = e->model_->layers().end;
  ASSIGN_OR_RETURN(e->state_, SequenceState::Create(&backend, config, so));
  // A rank of several (a shard with an exchange or a handoff) cannot warm up
  // alone: every MoE layer and block boundary waits for the other ranks,
  // which do not exist yet (their engine calls Prepare on all at once, or
  // their steps tune as they come).
  const bool one_of_several = shard.exchange != nullptr || shard.handoff != nullptr;
  if (e->bucketed_ && !one_of_several) RETURN_IF_ERROR(e->Prepare());

  ModelInfo& info = e->info_;
  info.name = std::filesystem::path(options.model_dir).lexically_normal().filename().string();
  if (info.name.empty()) {
    info.name = std::filesystem::path(options.model_dir)
                    .lexically_normal()
                    .parent_path()
                    .filename()
                    .string();
  }
  if (options.random_weights) {
    info.name =
        absl::StrCat(std::filesystem::path(options.model_dir).stem().string(), " (random weights)");
  }
  info.model_type = config.model_type;
  info.vocab_size = config.vocab_size;
  info.context_limit = so.context_limit;
  info.bos_token_id = config.bos_token_id;
  info.eos_token_ids = config.eos_token_ids;
  info.num_layers = config.num_layers;
  info.hidden_size = config.hidden_size;
  info.device = e->backend_->name();
  info.layout = absl::StrCat("1 device, all layers, all experts; decode graphs ", e->graph_mode_);
  return e;
}

absl::Status Dsv4Engine::AcquireSlot(int slot, int max_tokens) {
  return state_->Acquire(slot, max_tokens);
}

void Dsv4Engine::ReleaseSlot(int slot) {
  if (slot >= 0 && slot < static_cast<int>(fed_rows_.size())) fed_rows_[slot] = -1;
  state_->Release(slot);
}

namespace {

// Batch and token buckets: 1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, ... below
// `max`, then `max` itself (a step runs in the smallest that holds it).
std::vector<int> Buckets(int max) {
  std::vector<int> b;
  for (int v : {1, 2, 4}) {
    if (v < max) b.push_back(v);
  }
  for (int base = 8; base < max; base *= 2) {
    b.push_back(base);
    if (base + base / 2 < max) b.push_back(base + base / 2);
  }
  b.push_back(max);
  return b;
}

int BucketFor(const std::vector<int>& buckets, int n) {
  auto it = std::lower_bound(buckets.begin(), buckets.end(), n);
  return it == buckets.end() ? 0 : *it;
}

double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

absl::Status Dsv4Engine::Prepare() {
  if (!bucketed_) return absl::OkStatus();
  const int max_rows = model_->max_logit_rows();
  token_buckets_ = Buckets(model_->max_step_tokens());
  row_buckets_ = Buckets(max_rows);
  decode_buckets_ = Buckets(std::min(state_->num_slots(), max_rows));
  const int cap = state_->context_limit() - 1;
  const auto t0 = std::chrono::steady_clock::now();
  // Warm-up over scratch rows only: every GEMM shape a bucket uses is tuned
  // here, and every workspace reaches the size its worst step needs (prefill
  // chunks as if at the context limit), so serving never tunes or allocates.
  StepPlan empty;
  auto warm = [&](const StageOptions& so) -> absl::Status {
    ASSIGN_OR_RETURN(const StepShape shape, model_->Stage(empty, so, state_.get()));
    RETURN_IF_ERROR(model_->Upload());
    return model_->Run(shape, state_.get());
  };
  const size_t prefill_warmups = std::max(token_buckets_.size(), row_buckets_.size());
  for (size_t i = 0; i < prefill_warmups; ++i) {
    StageOptions so = BaseStageOptions();
    so.pad_tokens = token_buckets_[std::min(i, token_buckets_.size() - 1)];
    so.pad_rows = std::min(so.pad_tokens, row_buckets_[std::min(i, row_buckets_.size() - 1)]);
    so.max_position = cap;
    RETURN_IF_ERROR(warm(so));
  }
  auto decode_options = [&](int bucket) {
    StageOptions so = BaseStageOptions();
    so.pad_tokens = bucket;
    so.decode_rows = true;
    so.pad_rows = bucket;
    so.max_position = cap;
    return so;
  };
  for (int b : decode_buckets_) RETURN_IF_ERROR(warm(decode_options(b)));
  RETURN_IF_ERROR(backend_->Synchronize());
  LOG_INFO << absl::StrFormat(
      "%s: tuned %d prefill and %d decode buckets (up to %d tokens, %d sequences) in %.0f ms",
      backend_->name(), prefill_warmups, decode_buckets_.size(), token_buckets_.back(),
      decode_buckets_.back(), MsSince(t0));
  // Graphs hold the workspaces' pointers from here on.
  backend_->FreezeWorkspaces();
  if (graph_mode_ == "off") return absl::OkStatus();
  const auto t1 = std::chrono::steady_clock::now();
  const int64_t memory_before = backend_->device_memory_used();
  auto graph_mib = [&] {
    return static_cast<double>(backend_->device_memory_used() - memory_before) / (1 << 20);
  };
  if (graph_mode_ == "piecewise") {
    size_t graphs = 0;
    for (int b : decode_buckets_) {
      ASSIGN_OR_RETURN(const StepShape shape,
                       model_->Stage(empty, decode_options(b), state_.get()));
      ASSIGN_OR_RETURN(std::unique_ptr<Dsv4Model::Pieces> pieces,
                       model_->CapturePieces(shape, state_.get()));
      graphs += pieces->graphs.size();
      RETURN_IF_ERROR(model_->Upload());
      RETURN_IF_ERROR(model_->ReplayPieces(*pieces, shape));
      decode_pieces_.push_back(std::move(pieces));
    }
    RETURN_IF_ERROR(backend_->Synchronize());
    LOG_INFO << absl::StrFormat(
        "%s: captured piecewise decode graphs for batch %s (%d graphs, %d eager ops a step) in "
        "%.0f ms, %.1f MiB of device memory",
        backend_->name(), absl::StrJoin(decode_buckets_, ","), graphs,
        decode_pieces_.front()->eager.size(), MsSince(t1), graph_mib());
    return absl::OkStatus();
  }
  for (int b : decode_buckets_) {
    ASSIGN_OR_RETURN(const StepShape shape, model_->Stage(empty, decode_options(b), state_.get()));
    RETURN_IF_ERROR(backend_->BeginGraphCapture());
    absl::Status run = model_->Run(shape, state_.get());
    absl::StatusOr<int> graph = backend_->EndGraphCapture();
    RETURN_IF_ERROR(run);
    if (!graph.ok()) return graph.status();
    decode_graphs_.push_back(*graph);
    // One replay now: instantiation's first launch costs extra.
    RETURN_IF_ERROR(model_->Upload());
    RETURN_IF_ERROR(backend_->LaunchGraph(*graph));
  }
  RETURN_IF_ERROR(backend_->Synchronize());
  LOG_INFO << absl::StrFormat(
      "%s: captured %d decode graphs (batch %s) in %.0f ms, %.1f MiB of device memory",
      backend_->name(), decode_graphs_.size(), absl::StrJoin(decode_buckets_, ","), MsSince(t1),
      graph_mib());
  return absl::OkStatus();
}

StageOptions Dsv4Engine::BaseStageOptions() const {
  StageOptions so;
  so.sample = device_sampler_;
  // Only an engine that runs ahead stages fed tokens and has Run (and every
  // graph) take them from the last step's samples.
  if (pipelines()) so.fed_rows = &fed_rows_;
  return so;
}

bool Dsv4Engine::SamplesOnDevice(const SeqChunk& ch) const {
  const sampling::SamplingParams* p = ch.sampling;
  return device_sampler_ && ch.want_logits && p != nullptr && !p->has_penalties() &&
         p->top_logprobs <= cuda::kSampleMaxTopLogprobs &&
         ch.banned.size() <= static_cast<size_t>(cuda::kSampleMaxBanned);
}

bool Dsv4Engine::CanSampleOnDevice(const StepPlan& plan) const {
  if (!device_sampler_) return false;
  for (const SeqChunk& ch : plan.seqs) {
    if (ch.want_logits && !SamplesOnDevice(ch)) return false;
  }
  return true;
}

absl::Status Dsv4Engine::LaunchStep(const StepPlan& plan, bool want_sample, Launched* step,
                                    int pad_to) {
  const auto host_start = std::chrono::steady_clock::now();
  StageOptions so = BaseStageOptions();
  int graph = -1;
  const Dsv4Model::Pieces* pieces = nullptr;
  step->mode = "eager";
  step->bucket = 0;
  if (pad_to > 0 && pad_to < plan.num_tokens) {
    return absl::InternalError(
        absl::StrCat("step of ", plan.num_tokens, " tokens asked to be padded to ", pad_to));
  }
  if (bucketed_ || pad_to > 0) {
    int rows = 0;
    for (const SeqChunk& ch : plan.seqs) rows += ch.want_logits ? 1 : 0;
    const size_t i = DecodeBucket(plan, pad_to);
    if (i < decode_buckets_.size()) {
      so.pad_tokens = so.pad_rows = decode_buckets_[i];
      so.decode_rows = true;
      if (i < decode_pieces_.size()) {
        pieces = decode_pieces_[i].get();  // its eager ops sized by the real positions
      } else {
        so.max_position = state_->context_limit() - 1;
      }
      if (i < decode_graphs_.size()) graph = decode_graphs_[i];
    } else {
      so.pad_tokens = pad_to > 0 ? pad_to : BucketFor(token_buckets_, plan.num_tokens);
      so.pad_rows = rows > 0 && bucketed_ ? BucketFor(row_buckets_, rows) : 0;
    }
    step->bucket = so.pad_tokens;
  }
  ASSIGN_OR_RETURN(step->shape, model_->Stage(plan, so, state_.get()));
  const StepShape& shape = step->shape;
  RETURN_IF_ERROR(model_->Upload());
  if (graph >= 0) {
    RETURN_IF_ERROR(backend_->LaunchGraph(graph));
    step->mode = "full";
  } else if (pieces != nullptr) {
    RETURN_IF_ERROR(model_->ReplayPieces(*pieces, shape));
    step->mode = "piecewise";
  } else {
    RETURN_IF_ERROR(model_->Run(shape, state_.get()));
  }
  // The next step may take this one's device-sampled ids (fed rows by slot).
  for (int slot : fed_slots_) fed_rows_[slot] = -1;
  fed_slots_.clear();
  step->row_params.clear();  // keeps its capacity: no allocation in a step
  step->logprobs = false;
  if (!(want_sample && shape.sample)) {
    step->ids_set = -1;
    step->logits.clear();
    return model_->DownloadLogits(shape, &step->logits);
  }
  // The rows' parameters in row order; any asking for logprobs brings the records.
  for (const SeqChunk& ch : plan.seqs) {
    if (!ch.want_logits) continue;
    fed_rows_[ch.slot] = static_cast<int>(step->row_params.size());
    fed_slots_.push_back(ch.slot);
    step->row_params.push_back(ch.sampling);
    step->logprobs = step->logprobs || ch.sampling->logprobs || ch.sampling->top_logprobs > 0;
  }
  ASSIGN_OR_RETURN(step->ids_set, model_->DownloadIds(shape, step->logprobs));
  last_host_us_ =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - host_start)
          .count();
  return absl::OkStatus();
}

size_t Dsv4Engine::DecodeBucket(const StepPlan& plan, int pad_to) const {
  const size_t none = decode_buckets_.size();
  // An empty plan is a decode step only padded (an idle rank's).
  if (decode_buckets_.empty() || (plan.seqs.empty() && pad_to == 0)) return none;
  for (const SeqChunk& ch : plan.seqs) {
    if (ch.len != 1 || !ch.want_logits) return none;
  }
  const int n = pad_to > 0 ? pad_to : static_cast<int>(plan.seqs.size());
  const size_t i =
      std::lower_bound(decode_buckets_.begin(), decode_buckets_.end(), n) - decode_buckets_.begin();
  return i < none && (pad_to == 0 || decode_buckets_[i] == pad_to) ? i : none;
}

int Dsv4Engine::PaddedTokens(const StepPlan& plan) const {
  if (plan.seqs.empty()) return 0;
  if (!bucketed_) return plan.num_tokens;
  const size_t i = DecodeBucket(plan, 0);
  return i < decode_buckets_.size() ? decode_buckets_[i]
                                    : BucketFor(token_buckets_, plan.num_tokens);
}

absl::Status Dsv4Engine::StepPaddedTo(const StepPlan& plan, int tokens,
                                      const ForwardOptions& options, std::vector<float>* logits) {
  if (options.all_logits || options.hidden != nullptr) {
    if (tokens < plan.num_tokens) {
      return absl::InternalError(
          absl::StrCat("step of ", plan.num_tokens, " tokens asked to be padded to ", tokens));
    }
    ForwardOptions padded = options;
    padded.pad_tokens = tokens;
    return model_->Forward(plan, padded, state_.get(), logits);
  }
  StepResult result;
  RETURN_IF_ERROR(RunStep(plan, false, &result, tokens));
  logits->insert(logits->end(), result.logits.begin(), result.logits.end());
  return absl::OkStatus();
}

absl::Status Dsv4Engine::FinishStep(Launched& step, StepResult* result) {
  last_mode_ = step.mode;
  last_bucket_ = step.bucket;
  result->ids.clear();
  result->samples.clear();
  result->logits.clear();
  result->sampled = step.ids_set >= 0;
  if (!result->sampled) {
    result->logits.swap(step.logits);
    return absl::OkStatus();
  }
  const StepShape& shape = step.shape;
  ASSIGN_OR_RETURN(const int32_t* ids, model_->WaitIds(step.ids_set));
  result->ids.assign(ids, ids + shape.real_rows);
  if (!step.logprobs) return absl::OkStatus();
  const cuda::SampleLogprobs* rec = model_->SampledLogprobs(shape, step.ids_set);
  result->samples.resize(shape.real_rows);
  for (int r = 0; r < shape.real_rows; ++r) {
    sampling::SampleResult& out = result->samples[r];
    out.token_id = ids[r];
    const sampling::SamplingParams* p = step.row_params[r];
    if (!p->logprobs && p->top_logprobs == 0) continue;
    out.logprob = rec[r].chosen;
    for (int j = 0; j < rec[r].count; ++j) out.top.push_back({rec[r].ids[j], rec[r].values[j]});
  }
  return absl::OkStatus();
}

absl::Status Dsv4Engine::RunStep(const StepPlan& plan, bool want_sample, StepResult* result,
                                 int pad_to) {
  if (inflight_count_ > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("a step ran while ", inflight_count_, " launched step(s) wait for Collect"));
  }
  RETURN_IF_ERROR(LaunchStep(plan, want_sample, &step_, pad_to));
  return FinishStep(step_, result);
}

absl::Status Dsv4Engine::Launch(const StepPlan& plan) {
  if (!pipelines()) return absl::UnimplementedError("this engine does not pipeline steps");
  if (inflight_count_ == static_cast<int>(inflight_.size())) {
    return absl::FailedPreconditionError(
        "Launch: two steps are already launched and not collected");
  }
  Launched& step = inflight_[(inflight_head_ + inflight_count_) % inflight_.size()];
  RETURN_IF_ERROR(LaunchStep(plan, CanSampleOnDevice(plan), &step));
  ++inflight_count_;
  return absl::OkStatus();
}

absl::Status Dsv4Engine::Collect(StepResult* result) {
  if (inflight_count_ == 0) return absl::FailedPreconditionError("Collect: no step launched");
  Launched& step = inflight_[inflight_head_];
  inflight_head_ = (inflight_head_ + 1) % static_cast<int>(inflight_.size());
  --inflight_count_;
  return FinishStep(step, result);
}

absl::Status Dsv4Engine::Step(const StepPlan& plan, std::vector<float>* logits) {
  StepResult result;
  RETURN_IF_ERROR(RunStep(plan, false, &result));
  if (logits->empty()) {
    logits->swap(result.logits);
  } else {
    logits->insert(logits->end(), result.logits.begin(), result.logits.end());
  }
  return absl::OkStatus();
}

absl::Status Dsv4Engine::StepAndSample(const StepPlan& plan, StepResult* result) {
  return RunStep(plan, CanSampleOnDevice(plan), result);
}

absl::Status Dsv4Engine::StepWithOptions(const StepPlan& plan, const ForwardOptions& options,
                                         std::vector<float>* logits) {
  return model_->Forward(plan, options, state_.get(), logits);
}

std::unique_ptr<int32_t[], void (*)(int32_t*)> Dsv4Engine::AllocateHostTokens(size_t count) {
  return std::unique_ptr<int32_t[], void (*)(int32_t*)>(new int32_t[count],
                                                        [](int32_t* p) { delete[] p; });
}

std::vector<DeviceMemoryStats> Dsv4Engine::device_memory() const {
  const int64_t used = backend_->device_memory_used();
  const int64_t total = backend_->device_memory_total();
  if (used < 0 || total < 0) return {};
  // The metric's device label is the id alone ("cuda:0"), not the display
  // name with the product ("cuda:0 (NVIDIA H200)").
  return {DeviceMemoryStats{backend_->id(), used, total}};
}

}  // namespace moegraph
