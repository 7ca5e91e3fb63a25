// Routed experts (dsv4.md "MoE"): tokens grouped by expert on the device (no
// host sync), a grouped tensor-core GEMM for w1/w3 with the clamped SwiGLU in
// its epilogue, a grouped GEMM for w2 scaled by the routing weight, and a
// per-token sum over its k experts (deterministic: no atomics on outputs).
// Small batches of quantized experts split each GEMM's depth over several
// blocks (a decode step's 6 experts give too few blocks to keep the memory
// busy); the partial sums are added in a fixed order by the SwiGLU and
// combine kernels.
//   out[t] = sum_k w[t,k] * w2[e] (silu(min(w1[e] x, L)) * clamp(w3[e] x, -L, L)),
//   e = idx[t,k]; an id outside [0, experts) contributes nothing.
// The experts may be bf16, FP8 or FP4 (quant_format.h): quantized weights are
// dequantized to bf16 in the GEMMs' main loop (quant_tile.cuh).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/quant_format.h"

namespace moegraph::cuda {

struct MoeParams {
  const __nv_bfloat16* x = nullptr;  // [tokens, dim]
  const int32_t* idx = nullptr;      // [tokens, k]
  const float* w = nullptr;          // [tokens, k]
  WeightFmt fmt = WeightFmt::kBf16;  // of w1, w2, w3
  QuantOperand w1;                   // [experts, inter, dim]
  QuantOperand w3;                   // [experts, inter, dim]
  QuantOperand w2;                   // [experts, dim, inter]
  __nv_bfloat16* out = nullptr;      // [tokens, dim]
  int tokens = 0, k = 0, experts = 0, dim = 0, inter = 0;
  float swiglu_limit = 0.0f;  // <= 0: no clamp
  int num_sms = 132;          // for choosing the K split of small batches
};
constexpr int kMoeMaxExperts = 1024;
const char* Validate(const MoeParams& p);
size_t MoeWorkspaceBytes(const MoeParams& p);
cudaError_t LaunchMoe(const MoeParams& p, void* workspace, cudaStream_t stream);

}  // namespace moegraph::cuda
