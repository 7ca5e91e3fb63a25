// `moegraph plan`: the device memory a layout needs per GPU, from config.json
// and the checkpoint's headers alone (nothing loaded, no GPU): weights by
// group (routed experts split evenly over the GPUs, everything else
// replicated: the expert-parallel layout), sequence state per slot and per 1K
// tokens of context (SequenceState's buffers), activations, graphs and
// workspace (estimates, labelled as such).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/checkpoint_check.h"
#include "engine/model/model_config.h"
#include "engine/parallel/layer_placement.h"

namespace moegraph {

struct PlanOptions {
  std::string model_dir;
  int gpus = 1;
  // EngineOptions::layout / layer_blocks: "ep" (experts split over every
  // GPU), "layers" (a block of layers a GPU), "ep+layers" (layer_blocks
  // blocks, experts split over each block's GPUs).
  std::string layout = "ep";
  int layer_blocks = 0;
  int slots = 8;              // EngineOptions::num_slots' default
  int context = 0;            // 0: max_position_embeddings
  int max_step_tokens = 512;  // EngineOptions::max_step_tokens' default
  int64_t pool_tokens = 0;    // 0: min(slots * context, 262144), as the engine
  double gpu_gb = 141.0;      // H200
};

// Parses `plan MODEL_DIR [--gpus N] [--layout L] [--layer-blocks B] [--slots S]
// [--context C] [--max-step-tokens T] [--pool-tokens P] [--gpu-gb G]` (args
// without the subcommand); errors name the flag and its allowed values.
absl::StatusOr<PlanOptions> ParsePlanArgs(const std::vector<std::string>& args);
extern const char kPlanUsage[];

struct SlotState {
  uint64_t fixed_bytes = 0;    // window and compressor rings of one slot (all layers)
  double bytes_per_token = 0;  // compressed entries (CSA + HCA + indexer) per token
};
SlotState StatePerSlot(const ModelConfig& c);

// One block of layers and the GPUs that share it (every GPU of a block holds
// the same bytes).
struct PlanBlock {
  LayerRange layers;
  int gpus = 1;  // experts split evenly over them
  int experts_per_gpu = 0;
  uint64_t weights = 0, state = 0;  // per GPU
};

struct MemoryPlan {
  CheckpointReport report;
  ModelConfig config;
  PlanOptions options;
  int context = 0;
  int64_t pool_tokens = 0;
  std::vector<PlanBlock> blocks;  // "ep": one block of every layer over every GPU
  // Of the block whose GPUs need the most (the one that decides fits()):
  int experts_per_gpu = 0;
  uint64_t weights_by_group[kNumTensorGroups] = {};  // per GPU, device bytes ("ep" only)
  uint64_t weights = 0;
  SlotState slot;            // whole model
  uint64_t state = 0;        // rings of slots + scratch, entry pages, page tables
  uint64_t activations = 0;  // Dsv4Model::AllocateActivations + staging
  uint64_t graphs = 0;       // estimate
  uint64_t workspace = 0;    // estimate
  int graph_count = 0;
  uint64_t total() const { return weights + state + activations + graphs + workspace; }
  bool fits() const { return static_cast<double>(total()) <= options.gpu_gb * 1e9; }
};

// Reads config.json and the headers; errors for a bad directory, a bad
// config, or a checkpoint that does not match the model (naming the tensors).
absl::StatusOr<MemoryPlan> MakeMemoryPlan(const PlanOptions& options);
std::string FormatMemoryPlan(const MemoryPlan& plan);

}  // namespace moegraph
