// Routed MoE experts: clamped SwiGLU per expert, weighted and summed.
#pragma once

#include <cstdint>

#include "kernels/cpu/cpu_types.h"

namespace moegraph::cpu {

struct MoeExpertsParams {
  const float* x = nullptr;              // [tokens, dim]
  const int32_t* idx = nullptr;          // [tokens, k] expert ids
  const float* w = nullptr;              // [tokens, k] routing weights
  const void* w1 = nullptr;              // [experts, ffn, dim]  gate
  const void* w3 = nullptr;              // [experts, ffn, dim]  up
  const void* w2 = nullptr;              // [experts, dim, ffn]  down
  WeightType w_type = WeightType::kF32;  // of w1, w2, w3
  float* out = nullptr;                  // [tokens, dim], overwritten
  int64_t tokens = 0, dim = 0, ffn = 0;
  int experts = 0;
  int k = 0;
  float limit = 0.0f;  // swiglu_limit
  // Quantize the inputs of w1/w3 and of w2 to e4m3 in 1x128 groups first (the
  // W4A8 / W8A8 reference numerics; kernels/cpu/quant.h).
  bool quantize_inputs = false;
  bool pow2_scales = false;
};

// One expert's clamped SwiGLU FFN over `rows` gathered rows: y = w2 (silu(min(w1 x,
// L)) * clamp(w3 x, -L, L)), the inputs of w1/w3 and of w2 quantized first when
// asked (as MoeExpertsParams). `x` is quantized in place; a, b: [rows, ffn]
// scratch. Shared by MoeExperts and the expert-parallel pair op.
struct ExpertFfn {
  const void* w1 = nullptr;  // this expert's [ffn, dim]
  const void* w3 = nullptr;  // [ffn, dim]
  const void* w2 = nullptr;  // [dim, ffn]
  WeightType w_type = WeightType::kF32;
  int64_t dim = 0, ffn = 0;
  float limit = 0.0f;
  bool quantize_inputs = false;
  bool pow2_scales = false;
};
void RunExpertFfn(const ExpertFfn& f, int64_t rows, float* x, float* a, float* b, float* y);
// Expert `e` of a stack described by params with w1/w3/w2, w_type, dim, ffn,
// limit, quantize_inputs and pow2_scales (MoeExpertsParams, MoeExpertPairsParams).
template <typename P>
ExpertFfn ExpertFfnOf(const P& p, int64_t e) {
  const int64_t elem = p.w_type == WeightType::kBF16 ? 2 : 4;
  ExpertFfn f;
  f.w1 = static_cast<const char*>(p.w1) + e * p.ffn * p.dim * elem;
  f.w3 = static_cast<const char*>(p.w3) + e * p.ffn * p.dim * elem;
  f.w2 = static_cast<const char*>(p.w2) + e * p.dim * p.ffn * elem;
  f.w_type = p.w_type;
  f.dim = p.dim;
  f.ffn = p.ffn;
  f.limit = p.limit;
  f.quantize_inputs = p.quantize_inputs;
  f.pow2_scales = p.pow2_scales;
  return f;
}

// Workspace bytes for `tokens` rows.
int64_t MoeExpertsWorkspaceBytes(int64_t tokens, int64_t dim, int64_t ffn);

// out[t] = sum_k w[t,k] * w2[e] (silu(min(w1[e] x, L)) * clamp(w3[e] x, -L, L)),
// e = idx[t,k], accumulated in increasing expert id. Returns false when an
// expert id is out of range.
bool MoeExperts(const MoeExpertsParams& p, void* workspace);

}  // namespace moegraph::cpu
