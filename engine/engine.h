// The one interface server/ uses to reach the model: load a checkpoint on a
// device, run batched steps over sequence slots, free slots. No gRPC or
// protobuf types here (engine/ never includes them).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/sampling/sampler.h"

namespace moegraph {

inline constexpr int kDefaultW8A8MinRows = 0;

struct EngineOptions {
  std::string model_dir;
  std::string device = "cpu";  // "cpu" or "cuda" / "cuda:N"
  int num_slots = 8;           // sequence slots (concurrently running sequences)
  int context_limit = 0;       // max prompt + generated tokens; 0 = the model's max
  int max_step_tokens = 512;   // tokens one Step may carry (sizes the activations)
  // Tokens of compressed state (entry pages) the pools hold over all slots;
  // 0 = num_slots * context_limit capped at 262144 (a 1M-token model limit
  // would otherwise reserve gigabytes per slot up front).
  int64_t state_pool_tokens = 0;
  // Decode steps: "off" runs every step's ops eagerly; "full" replays one
  // CUDA graph per batch bucket (all layers, head and sampling), captured at
  // load; "piecewise" replays graphs of the stretches between the
  // length-shaped ops (indexer top-k, attention), which run eagerly sized by
  // the step's real positions; "auto" is "full" where the backend has graphs,
  // else "off".
  std::string graphs = "auto";
  // Sample on the device where the request's parameters allow (CUDA).
  bool device_sampling = true;
  // With device sampling: let the scheduler launch step N+1 before step N's
  // ids reach the host (Engine::pipelines(); docs/decode-step.md).
  bool pipeline_steps = true;
  // CPU: the backend samples (the host's Sampler behind the device sampler's
  // contract), so the staged-sampling and pipelined steps of the GPU path run
  // without a GPU. Off by default: the scheduler samples CPU logits itself.
  bool cpu_backend_sampling = false;
  // No checkpoint: model_dir (a directory with config.json, or a .json file)
  // gives only the config; the weights are random (bench-decode, memory and
  // speed figures of models one does not have). Never for serving text.
  bool random_weights = false;
  uint64_t random_seed = 1;
  // With random_weights only: the config's first N layers (0 = all), and the
  // weights' format: "bf16", "fp8" (FP8 linears and experts), "fp4" (FP8
  // linears, FP4 experts, as released); "" = what the config says.
  int num_layers = 0;
  std::string weight_format;
  // Several ranks in one engine (docs/expert-parallel.md): "cpu:0,cpu:1" runs
  // two in-process CPU ranks, "cuda:0,cuda:1" one rank a GPU ("cuda:0,cuda:0":
  // two sharing one). Empty: `device` alone.
  std::string devices;
  // How the model is split over `devices`: "ep" = routed experts split
  // evenly, attention and shared expert replicated, slots shared out;
  // "layers" = contiguous blocks of layers, one a device, every slot on each;
  // "ep+layers" = `layer_blocks` blocks of layers, each over as many of the
  // devices (in order), expert-parallel within the block.
  std::string layout = "ep";
  int layer_blocks = 0;
  // How ep ranks exchange tokens: "in-process" (ranks write into each
  // other's buffers: CPU ranks meet at host barriers, CUDA ranks on one GPU
  // or on peers meet on the device, so decode graphs may hold it), "nccl"
  // (one communicator, CUDA ranks on distinct GPUs; stream-ordered, so
  // decode graphs may hold it; with one device it runs the ep engine over
  // one rank), or "auto": in-process until a multi-GPU run has verified
  // NCCL.
  std::string transport = "auto";
  // How long a rank waits for the others at an expert exchange or a layer
  // handoff before the step fails naming the missing ranks.
  int exchange_timeout_ms = 60000;
  // ep: pad every rank's step to one token count, the most any rank's own
  // step would carry, so that every exchange call moves the same rows on
  // every rank. The NCCL transport always does (its message sizes are that
  // count, not the capacity); this asks the in-process one to as well, and
  // to check it, so the padded path runs on CPU ranks.
  bool equal_exchange_rows = false;
  // FP8 products (CUDA) of at least this many rows quantize their activations
  // to e4m3 in 1x128 groups, as the released checkpoints' reference does, and
  // run cuBLASLt's block-scaled FP8 GEMM (W8A8); smaller ones keep bf16
  // activations (W8A16, our kernel). 0 = never, the default: W8A8 is 15%
  // faster in prefill but misses the bf16 criterion against transformers
  // narrowly (kernels/cuda/NOTES.md).
  int w8a8_min_rows = kDefaultW8A8MinRows;
};

// The accepted values of EngineOptions::weight_format.
inline constexpr const char* kWeightFormats[] = {"bf16", "fp8", "fp4"};

// The accepted values of EngineOptions::graphs, for config validation.
inline constexpr const char* kGraphModes[] = {"auto", "off", "piecewise", "full"};
// The accepted values of EngineOptions::layout.
inline constexpr const char* kLayouts[] = {"ep", "layers", "ep+layers"};
inline constexpr const char* kTransports[] = {"auto", "in-process", "nccl"};

struct ModelInfo {
  std::string name;        // the model directory's base name
  std::string model_type;  // "deepseek_v4"
  int vocab_size = 0;
  int context_limit = 0;
  int bos_token_id = -1;
  std::vector<int> eos_token_ids;
  int num_layers = 0;
  int hidden_size = 0;
  std::string device;  // e.g. "cpu" or "cuda:0 (NVIDIA H100 80GB HBM3)"
  std::string layout;  // e.g. "1 device, all layers, all experts"
};

// One sequence's share of a step: `len` consecutive tokens starting at
// `token_offset` in StepPlan::token_ids, at positions start_pos, start_pos+1, ...
struct SeqChunk {
  SeqChunk() = default;
  SeqChunk(int slot_, int start_pos_, int token_offset_, int len_, bool want_logits_)
      : slot(slot_),
        start_pos(start_pos_),
        token_offset(token_offset_),
        len(len_),
        want_logits(want_logits_) {}

  int slot = 0;
  int start_pos = 0;
  int token_offset = 0;
  int len = 0;
  bool want_logits = false;  // return the logits of this chunk's last token
  // For StepAndSample (want_logits chunks): the request's parameters, the
  // index of the sampled token within its request (the RNG counter), and ids
  // it may not pick. Null sampling: the host samples this step.
  const sampling::SamplingParams* sampling = nullptr;
  uint64_t sample_index = 0;
  std::span<const int32_t> banned;
  // Pipelined steps only (Engine::pipelines()): a one-token chunk whose token
  // is the id the engine sampled for this slot in the step launched just
  // before, which the host may not have yet; token_ids holds 0 in its place.
  bool token_from_last_sample = false;
};

// What StepAndSample returns: either the sampled ids (the engine sampled on
// the device) or the logits rows for the host sampler, one per chunk with
// want_logits, in plan order.
struct StepResult {
  bool sampled = false;
  std::vector<int32_t> ids;  // when sampled
  // When sampled and a row asked for logprobs: one per row (id, and the
  // logprobs where that row's request asked for them).
  std::vector<sampling::SampleResult> samples;
  std::vector<float> logits;  // otherwise: rows of vocab_size floats
};

struct StepPlan {
  // Host memory owned by the caller (from Engine::AllocateHostTokens); read
  // during Step (or Launch) only.
  const int32_t* token_ids = nullptr;
  int num_tokens = 0;
  std::vector<SeqChunk> seqs;
};

// The state pool's capacity and use (Engine::state_pool()). Tokens count
// prompt + output positions; pages are the pool's entry pages over every kind
// of compressed entry (0 on an engine without pages).
struct StatePoolStats {
  int64_t capacity_tokens = 0;  // tokens the pool's pages hold over all slots
  int64_t reserved_tokens = 0;  // promised to acquired slots (each slot's max_tokens)
  int64_t used_tokens = 0;      // held by acquired slots now (tokens they have consumed)
  int64_t capacity_pages = 0;
  int64_t reserved_pages = 0;  // promised to acquired slots
  int64_t used_pages = 0;      // mapped: holding entries now
  // The most tokens one sequence can ever acquire (an empty pool): the context
  // limit, or less when the pool is smaller. 0 = no limit beyond the context limit.
  int max_sequence_tokens = 0;
};

// The memory of one device an engine runs on (Engine::device_memory()).
struct DeviceMemoryStats {
  std::string device;      // the backend's name: "cuda:0"
  int64_t used_bytes = 0;  // in use on the device, by every process
  int64_t total_bytes = 0;
};

class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const EngineOptions& options);
  virtual ~Engine() = default;

  virtual const ModelInfo& info() const = 0;
  virtual int num_slots() const = 0;
  virtual int max_step_tokens() const = 0;

  // Reserves state for a sequence of up to `max_tokens` total tokens in
  // `slot` (free before this call). RESOURCE_EXHAUSTED when the state pool
  // cannot hold it; then the slot stays free.
  virtual absl::Status AcquireSlot(int slot, int max_tokens) = 0;
  // Frees the slot's state; takes effect before the next Step.
  virtual void ReleaseSlot(int slot) = 0;

  // Runs one forward over `plan` (mutates the slots' state). For every chunk
  // with want_logits, appends vocab_size f32 logits to `logits`, in plan
  // order. Not thread-safe: one caller (the scheduler thread).
  virtual absl::Status Step(const StepPlan& plan, std::vector<float>* logits) = 0;

  // Step, then sample on the device where the engine can (every sampled
  // chunk carries parameters the device sampler serves); otherwise the
  // logits come back as from Step. Default: Step.
  virtual absl::Status StepAndSample(const StepPlan& plan, StepResult* result) {
    result->sampled = false;
    result->ids.clear();
    result->samples.clear();
    result->logits.clear();
    return Step(plan, &result->logits);
  }

  // Whether the engine can sample this want_logits chunk on the device;
  // StepAndSample does (the ids come back in StepResult::ids, not as logits)
  // when it can for every want_logits chunk of the plan. Default: never.
  virtual bool SamplesOnDevice(const SeqChunk& /*chunk*/) const { return false; }

  // Pipelined steps (docs/decode-step.md): Launch enqueues a step and returns
  // before its results reach the host; Collect waits for the oldest launched
  // step and returns what StepAndSample would have. At most two steps are
  // launched and not yet collected. A chunk of the second may take
  // token_from_last_sample when every want_logits chunk of the first was
  // sampled on the device; slots stay acquired until every step naming them
  // is collected. Engines that cannot run ahead return false (the default)
  // and never see Launch or Collect.
  virtual bool pipelines() const { return false; }
  virtual absl::Status Launch(const StepPlan& /*plan*/) {
    return absl::UnimplementedError("this engine does not pipeline steps");
  }
  virtual absl::Status Collect(StepResult* /*result*/) {
    return absl::UnimplementedError("this engine does not pipeline steps");
  }

  // What the last step ran as, for metrics: "eager", "piecewise" or "full"
  // (a decode graph replay), and its bucket (the padded batch or token count; 0 unpadded).
  virtual const char* last_step_mode() const { return "eager"; }
  virtual int last_step_bucket() const { return 0; }

  // Host memory for the caller's step inputs, owned through the returned
  // pointer's deleter. The engine copies the plan into its own pinned staging
  // block (docs/decode-step.md), so this is plain host memory.
  virtual std::unique_ptr<int32_t[], void (*)(int32_t*)> AllocateHostTokens(size_t count) = 0;

  // The state pool's capacity and use, for admission and metrics. Call it from
  // the thread that calls AcquireSlot and Step (the state is not locked). An
  // engine that does not report its pool returns zeros.
  virtual StatePoolStats state_pool() const { return {}; }

  // Slots grouped by the rank holding their state (expert parallelism,
  // docs/expert-parallel.md): the scheduler gives a new request a slot of
  // the group running the fewest sequences. One group by default.
  virtual int num_slot_groups() const { return 1; }
  virtual int slot_group(int /*slot*/) const { return 0; }

  // The memory of each device the engine runs on, for metrics; empty when it
  // runs on none (CPU). Asks the driver (microseconds): not for every step.
  virtual std::vector<DeviceMemoryStats> device_memory() const { return {}; }
};

}  // namespace moegraph
