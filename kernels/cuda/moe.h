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
// dequantized to bf16 in the GEMMs' main loop (quant_tile.cuh), or, when
// the experts average <= 2 rows (decode), streamed as stored through the
// CUDA cores with fp32 sums (gemv_chunk.cuh), tiles of <= 4 rows an expert.
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
  const float* w = nullptr;          // [tokens, k]; null: unweighted (MoePairs only)
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

// Expert parallelism (Backend::MoeExpertPairs): the experts this rank holds
// over the rows dispatched to it. moe.x holds sources x capacity rows (source
// s owns rows [s * capacity, s * capacity + counts[s])); moe.experts is the
// rank's expert count, moe.idx and moe.w are set here. One unweighted output
// row per routed (row, choice) pair goes to out, grouped by expert (in no
// fixed order within an expert), pair_dst[i] = row * k + choice, and
// pair_count = the pairs written (at most pair_capacity; size it rows x k).
struct MoePairsParams {
  MoeParams moe;
  const int32_t* experts = nullptr;  // [rows, k] global expert ids, -1: held elsewhere
  const int32_t* counts = nullptr;   // [sources], device
  int sources = 1, capacity = 0, first_expert = 0;
  __nv_bfloat16* out = nullptr;   // [pair_capacity, dim]
  int32_t* pair_dst = nullptr;    // [pair_capacity]
  int32_t* pair_count = nullptr;  // [1]
  int pair_capacity = 0;
};
const char* Validate(const MoePairsParams& p);
size_t MoePairsWorkspaceBytes(const MoePairsParams& p);
cudaError_t LaunchMoePairs(const MoePairsParams& p, void* workspace, cudaStream_t stream);

// out[t] = sum_i w[t,i] * y[t,i,:] in increasing expert id idx[t,i] (ties in
// choice order), fp32 sums: the token's own rank combining its experts'
// outputs (Backend::MoeWeightedSum).
constexpr int kMoeMaxChoices = 64;
struct MoeWeightedSumParams {
  const __nv_bfloat16* y = nullptr;  // [tokens, k, dim]
  const int32_t* idx = nullptr;      // [tokens, k]
  const float* w = nullptr;          // [tokens, k]
  __nv_bfloat16* out = nullptr;      // [tokens, dim]
  int tokens = 0, k = 0, dim = 0;
};
const char* Validate(const MoeWeightedSumParams& p);
cudaError_t LaunchMoeWeightedSum(const MoeWeightedSumParams& p, cudaStream_t stream);

}  // namespace moegraph::cuda
