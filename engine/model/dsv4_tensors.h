// The one description of the tensors a DeepSeek-V4 checkpoint must hold for
// Dsv4Model: names (with the alternative spellings accepted), logical shapes,
// how each is read and what it is for. Dsv4Model::LoadWeights loads exactly
// this list, and the checkpoint check (checkpoint_check.h, `moegraph plan`)
// walks it over a header-only store.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/backend/weight.h"
#include "engine/model/model_config.h"

namespace moegraph {

// Where a tensor goes in the model (one per Dsv4Model field it fills).
enum class TensorField : uint8_t {
  kEmbed,
  kHead,
  kNorm,
  kHcHeadFn,
  kHcHeadBase,
  kHcHeadScale,
  kAttnNorm,
  kFfnNorm,
  kHcAttnFn,
  kHcAttnBase,
  kHcAttnScale,
  kHcFfnFn,
  kHcFfnBase,
  kHcFfnScale,
  kWqA,
  kQNorm,
  kWqB,
  kWkv,
  kKvNorm,
  kWoA,
  kWoB,
  kSinks,
  kCompWkv,
  kCompWgate,
  kCompApe,
  kCompNorm,
  kIndexCompWkv,
  kIndexCompWgate,
  kIndexCompApe,
  kIndexCompNorm,
  kIndexWqB,
  kIndexWeightsProj,
  kGate,
  kGateBias,
  kTid2eid,
  kExpertW1,
  kExpertW2,
  kExpertW3,
  kSharedW1,
  kSharedW2,
  kSharedW3,
};

// What a tensor is for, for reports (bytes by group).
enum class TensorGroup : uint8_t {
  kEmbedHead,      // embed, head
  kAttention,      // wq_a, wq_b, wkv, wo_a, wo_b and the indexer's wq_b, weights_proj
  kCompressor,     // the compressors' wkv, wgate (main and indexer)
  kRouter,         // gate.weight, gate.bias, gate.tid2eid
  kRoutedExperts,  // ffn.experts.E.w{1,2,3}
  kSharedExperts,  // ffn.shared_experts.w{1,2,3}
  kSmall,          // norms, sinks, ape, hyper-connection tensors
};
constexpr int kNumTensorGroups = 7;
const char* TensorGroupName(TensorGroup g);

// How the loader reads a tensor.
enum class TensorRead : uint8_t {
  kVector,  // WeightStore::Get with the shape, any stored dtype (f32 on the device)
  kTable,   // the same, uploaded as a matrix (the embedding)
  kMatrix,  // ReadMatrix: dense, FP8 + block scale or FP4 + group scale; `names` are bases
};

struct TensorSpec {
  // Alternatives, the first present wins (kMatrix: base names without ".weight").
  std::vector<std::string> names;
  std::vector<int64_t> shape;  // logical ([rows, cols] for matrices, K in values)
  TensorRead read = TensorRead::kVector;
  TensorField field = TensorField::kEmbed;
  int layer = -1;   // -1: model-level
  int expert = -1;  // routed experts: 0..E-1 (stacked by the loader)
};

TensorGroup GroupOf(TensorField f);

// Every tensor Dsv4Model reads for `config`, in load order: model-level
// tensors, then per layer its norms and hyper-connections, attention (and its
// compressors and indexer by layer kind), router, routed experts w1 (e = 0..E-1),
// w2, w3, shared experts.
std::vector<TensorSpec> Dsv4TensorSpecs(const ModelConfig& config);

// The format a matrix has in the released checkpoints for `quant`
// (docs/quantized-weights.md): FP8 for q, kv, wo_b, the indexer's q and the
// shared expert when quant.fp8; the routed experts in quant.expert_dtype
// (as the linears when empty); wo_a, gate, head and the compressors dense.
WeightFormat ReleasedFormat(TensorField field, const QuantConfig& quant);

}  // namespace moegraph
