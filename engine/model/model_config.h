// DeepSeek-V4 config.json, in both spellings real files use (current:
// layer_types / mlp_layer_types / compress_rates / rope_parameters.{main,
// compress}; legacy: compress_ratios with its trailing MTP entry,
// num_hash_layers, qk_rope_head_dim, rope_scaling), resolved to one struct.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace moegraph {

// sliding_attention, compressed_sparse_attention, heavily_compressed_attention
enum class AttnKind { kSliding, kCsa, kHca };
enum class MlpKind { kHashMoe, kMoe };

struct RopeTable {
  double theta = 10000.0;
  bool yarn = false;
  double factor = 1.0;
  double original_max_position = 0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  // cos/sin are multiplied by this. transformers forces 1.0 when it builds the
  // compress table from the flat/legacy keys; a nested YaRN table without an
  // explicit `attention_factor` gets YaRN's mscale (0.1*ln(factor)+1), as there.
  double attention_factor = 1.0;
};

// quantization_config and expert_dtype of the released checkpoints:
//   "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
//     "quant_method": "fp8", "scale_fmt": "ue8m0", "weight_block_size": [128, 128]}
// plus "expert_dtype" ("fp4" | "fp8") at the top level or, in later releases,
// inside quantization_config. Which tensors are quantized is read from the
// checkpoint (a .scale beside the weight); this says what to expect.
struct QuantConfig {
  bool fp8 = false;          // quant_method "fp8" (block-scaled e4m3 linears)
  bool pow2_scales = false;  // scale_fmt "ue8m0": activation scales are powers of two
  std::string expert_dtype;  // "fp4", "fp8", or "" (experts as the linears)
};

struct ModelConfig {
  std::string model_type;  // always "deepseek_v4"
  int vocab_size = 0;
  int hidden_size = 0;  // D
  int num_layers = 0;
  int num_heads = 0;  // H
  int head_dim = 0;   // d
  int rope_dim = 0;   // r = int(d * partial_rotary_factor) (qk_rope_head_dim)
  int q_lora_rank = 0;
  int o_groups = 0;
  int o_lora_rank = 0;
  int n_routed_experts = 0;     // E
  int num_experts_per_tok = 0;  // k
  int n_shared_experts = 1;
  int moe_intermediate_size = 0;  // F
  double routed_scaling_factor = 1.0;
  double swiglu_limit = 0.0;
  int sliding_window = 0;  // W
  int csa_rate = 0;        // m
  int hca_rate = 0;        // M
  int index_n_heads = 0;
  int index_head_dim = 0;
  int index_topk = 0;
  int hc_mult = 0;  // n
  int hc_sinkhorn_iters = 0;
  double hc_eps = 1e-6;
  double rms_norm_eps = 1e-6;
  int max_position_embeddings = 0;
  int bos_token_id = -1;
  std::vector<int> eos_token_ids;
  bool tie_word_embeddings = false;
  RopeTable rope_main;
  RopeTable rope_compress;
  std::vector<AttnKind> layer_types;  // num_layers entries
  std::vector<MlpKind> mlp_types;     // num_layers entries
  int num_nextn_predict_layers = 1;   // MTP layers in the checkpoint (not run)
  QuantConfig quant;

  int num_layers_of(AttnKind k) const;
  // Index of layer L among the layers of its own kind (entry pages are per kind).
  int index_within_kind(int layer) const;
};

// Parses config.json text. Errors (InvalidArgument) name the offending field
// and say what was expected and what was found.
//
// Required: model_type ("deepseek_v4"), vocab_size, hidden_size,
// num_hidden_layers, num_attention_heads, head_dim, q_lora_rank, o_groups,
// o_lora_rank, n_routed_experts, num_experts_per_tok, moe_intermediate_size,
// sliding_window, index_n_heads, index_head_dim, index_topk, and the attention
// schedule (layer_types or legacy compress_ratios). Everything else defaults
// as transformers' DeepseekV4Config does (rope_theta 10000,
// compress_rope_theta 160000, partial_rotary_factor qk_rope_head_dim/head_dim
// or 64/512, compress_rates 4/128, 3 hash layers, hc_mult 4, ...).
//
// Stricter than transformers where it would silently pick one of two
// disagreeing fields: qk_rope_head_dim vs head_dim * partial_rotary_factor,
// compress_ratios vs layer_types, num_hash_layers vs mlp_layer_types,
// rope_scaling together with rope_parameters. compress_ratios must have
// num_hidden_layers (+ num_nextn_predict_layers) entries and is mapped through
// compress_rates (without them: the smaller non-zero rate is CSA), where
// transformers truncates it and maps only 0/4/128.
absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text);
// Reads MODEL_DIR/config.json.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir);

// inv_freq[i] for i in [0, r/2), as transformers computes it (dsv4.md "Rotary").
std::vector<float> RopeInvFreq(const RopeTable& table, int rope_dim);

// "sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention".
const char* AttnKindName(AttnKind k);
// "hash_moe", "moe".
const char* MlpKindName(MlpKind k);

}  // namespace moegraph
