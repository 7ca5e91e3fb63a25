#include "engine/model/dsv4_tensors.h"

#include <tuple>

#include "absl/strings/str_cat.h"

namespace moegraph {

const char* TensorGroupName(TensorGroup g) {
  switch (g) {
    case TensorGroup::kEmbedHead:
      return "embed+head";
    case TensorGroup::kAttention:
      return "attention";
    case TensorGroup::kCompressor:
      return "compressors";
    case TensorGroup::kRouter:
      return "router";
    case TensorGroup::kRoutedExperts:
      return "routed experts";
    case TensorGroup::kSharedExperts:
      return "shared experts";
    case TensorGroup::kSmall:
      return "norms/hc/sinks/ape";
  }
  return "?";
}

TensorGroup GroupOf(TensorField f) {
  using F = TensorField;
  switch (f) {
    case F::kEmbed:
    case F::kHead:
      return TensorGroup::kEmbedHead;
    case F::kWqA:
    case F::kWqB:
    case F::kWkv:
    case F::kWoA:
    case F::kWoB:
    case F::kIndexWqB:
    case F::kIndexWeightsProj:
      return TensorGroup::kAttention;
    case F::kCompWkv:
    case F::kCompWgate:
    case F::kIndexCompWkv:
    case F::kIndexCompWgate:
      return TensorGroup::kCompressor;
    case F::kGate:
    case F::kGateBias:
    case F::kTid2eid:
      return TensorGroup::kRouter;
    case F::kExpertW1:
    case F::kExpertW2:
    case F::kExpertW3:
      return TensorGroup::kRoutedExperts;
    case F::kSharedW1:
    case F::kSharedW2:
    case F::kSharedW3:
      return TensorGroup::kSharedExperts;
    default:
      return TensorGroup::kSmall;
  }
}

std::vector<TensorSpec> Dsv4TensorSpecs(const ModelConfig& c) {
  using F = TensorField;
  using R = TensorRead;
  const int64_t D = c.hidden_size, n = c.hc_mult, H = c.num_heads, d = c.head_dim;
  const int64_t V = c.vocab_size, E = c.n_routed_experts, K = c.num_experts_per_tok;
  const int64_t Fi = c.moe_intermediate_size, Fs = Fi * c.n_shared_experts;
  const int64_t g = c.o_groups > 0 ? c.o_groups : 1, ql = c.q_lora_rank, ol = c.o_lora_rank;
  const int64_t nI = c.index_n_heads, ci = c.index_head_dim;
  const int64_t mix = (2 + n) * n;

  std::vector<TensorSpec> out;
  int layer = -1;
  auto add = [&](std::vector<std::string> names, std::vector<int64_t> shape, R read, F field,
                 int expert = -1) {
    out.push_back(TensorSpec{std::move(names), std::move(shape), read, field, layer, expert});
  };
  add({"embed.weight"}, {V, D}, R::kTable, F::kEmbed);
  add({"head"}, {V, D}, R::kMatrix, F::kHead);
  add({"norm.weight"}, {D}, R::kVector, F::kNorm);
  add({"hc_head_fn", "hc_head.hc_fn"}, {n, n * D}, R::kVector, F::kHcHeadFn);
  add({"hc_head_base", "hc_head.hc_base"}, {n}, R::kVector, F::kHcHeadBase);
  add({"hc_head_scale", "hc_head.hc_scale"}, {1}, R::kVector, F::kHcHeadScale);

  for (layer = 0; layer < c.num_layers; ++layer) {
    const std::string p = absl::StrCat("layers.", layer, ".");
    const AttnKind kind = c.layer_types[layer];
    add({p + "attn_norm.weight"}, {D}, R::kVector, F::kAttnNorm);
    add({p + "ffn_norm.weight"}, {D}, R::kVector, F::kFfnNorm);
    add({p + "hc_attn_fn"}, {mix, n * D}, R::kVector, F::kHcAttnFn);
    add({p + "hc_attn_base"}, {mix}, R::kVector, F::kHcAttnBase);
    add({p + "hc_attn_scale"}, {3}, R::kVector, F::kHcAttnScale);
    add({p + "hc_ffn_fn"}, {mix, n * D}, R::kVector, F::kHcFfnFn);
    add({p + "hc_ffn_base"}, {mix}, R::kVector, F::kHcFfnBase);
    add({p + "hc_ffn_scale"}, {3}, R::kVector, F::kHcFfnScale);

    const std::string a = p + "attn.";
    add({a + "wq_a"}, {ql, D}, R::kMatrix, F::kWqA);
    add({a + "q_norm.weight"}, {ql}, R::kVector, F::kQNorm);
    add({a + "wq_b"}, {H * d, ql}, R::kMatrix, F::kWqB);
    add({a + "wkv"}, {d, D}, R::kMatrix, F::kWkv);
    // transformers saves the kv norm as attn.norm, the official code as attn.kv_norm.
    add({a + "norm.weight", a + "kv_norm.weight"}, {d}, R::kVector, F::kKvNorm);
    add({a + "wo_a"}, {g * ol, H * d / g}, R::kMatrix, F::kWoA);
    add({a + "wo_b"}, {D, g * ol}, R::kMatrix, F::kWoB);
    add({a + "attn_sink"}, {H}, R::kVector, F::kSinks);

    auto compressor = [&](const std::string& q, int64_t rate, int64_t width, bool overlap,
                          bool indexer) {
      const int64_t w = overlap ? 2 * width : width;
      add({q + "wkv"}, {w, D}, R::kMatrix, indexer ? F::kIndexCompWkv : F::kCompWkv);
      add({q + "wgate"}, {w, D}, R::kMatrix, indexer ? F::kIndexCompWgate : F::kCompWgate);
      add({q + "ape"}, {rate, w}, R::kVector, indexer ? F::kIndexCompApe : F::kCompApe);
      add({q + "norm.weight"}, {width}, R::kVector, indexer ? F::kIndexCompNorm : F::kCompNorm);
    };
    if (kind == AttnKind::kHca) {
      compressor(a + "compressor.", c.hca_rate, d, false, false);
    } else if (kind == AttnKind::kCsa) {
      compressor(a + "compressor.", c.csa_rate, d, true, false);
      compressor(a + "indexer.compressor.", c.csa_rate, ci, true, true);
      add({a + "indexer.wq_b"}, {nI * ci, ql}, R::kMatrix, F::kIndexWqB);
      add({a + "indexer.weights_proj"}, {nI, D}, R::kMatrix, F::kIndexWeightsProj);
    }

    const std::string f = p + "ffn.";
    add({f + "gate"}, {E, D}, R::kMatrix, F::kGate);
    if (c.mlp_types[layer] == MlpKind::kHashMoe) {
      add({f + "gate.tid2eid"}, {V, K}, R::kVector, F::kTid2eid);
    } else {
      add({f + "gate.bias"}, {E}, R::kVector, F::kGateBias);
    }
    for (auto [which, rows, cols, field] :
         {std::tuple{"w1", Fi, D, F::kExpertW1}, std::tuple{"w2", D, Fi, F::kExpertW2},
          std::tuple{"w3", Fi, D, F::kExpertW3}}) {
      for (int e = 0; e < E; ++e) {
        add({absl::StrCat(f, "experts.", e, ".", which)}, {rows, cols}, R::kMatrix, field, e);
      }
    }
    add({f + "shared_experts.w1"}, {Fs, D}, R::kMatrix, F::kSharedW1);
    add({f + "shared_experts.w2"}, {D, Fs}, R::kMatrix, F::kSharedW2);
    add({f + "shared_experts.w3"}, {Fs, D}, R::kMatrix, F::kSharedW3);
  }
  return out;
}

WeightFormat ReleasedFormat(TensorField field, const QuantConfig& quant) {
  if (!quant.fp8) return WeightFormat::kDense;
  using F = TensorField;
  switch (field) {
    case F::kWqA:
    case F::kWqB:
    case F::kWkv:
    case F::kWoB:
    case F::kIndexWqB:
    case F::kSharedW1:
    case F::kSharedW2:
    case F::kSharedW3:
      return WeightFormat::kFp8;
    case F::kExpertW1:
    case F::kExpertW2:
    case F::kExpertW3:
      return quant.expert_dtype == "fp4" ? WeightFormat::kFp4 : WeightFormat::kFp8;
    default:
      return WeightFormat::kDense;
  }
}

}  // namespace moegraph
