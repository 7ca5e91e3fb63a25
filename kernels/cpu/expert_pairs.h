// Routed experts split over ranks (expert parallelism): the experts one rank
// holds, run over the rows dispatched to it, each (row, choice) pair's
// unweighted output written where the caller says (the combine send
// buffer); and the weighted sum of a token's returned outputs on its own
// rank, in the order MoeExperts (experts.h) accumulates them.
#pragma once

#include <cstdint>

#include "kernels/cpu/cpu_types.h"

namespace moegraph::cpu {

struct MoeExpertPairsParams {
  const float* x = nullptr;          // [sources * capacity, dim] received rows
  const int32_t* experts = nullptr;  // [sources * capacity, k] global ids, -1 = elsewhere
  const int32_t* counts = nullptr;   // [sources] rows received from each source
  int sources = 0, capacity = 0;     // source s owns rows [s*capacity, s*capacity + counts[s])
  int first_expert = 0;              // global id of local expert 0
  int local_experts = 0;
  const void* w1 = nullptr;  // [local_experts, ffn, dim]  gate
  const void* w3 = nullptr;  // [local_experts, ffn, dim]  up
  const void* w2 = nullptr;  // [local_experts, dim, ffn]  down
  WeightType w_type = WeightType::kF32;
  int64_t dim = 0, ffn = 0;
  int k = 0;
  float limit = 0.0f;
  bool quantize_inputs = false;  // as MoeExpertsParams
  bool pow2_scales = false;
  float* out = nullptr;           // [pair_capacity, dim]: pair outputs, by local expert
  int32_t* pair_dst = nullptr;    // [pair_capacity]: row * k + choice of each pair
  int32_t* pair_count = nullptr;  // [1]
  int64_t pair_capacity = 0;
};

// Workspace bytes for up to `pairs` pairs of one expert.
int64_t MoeExpertPairsWorkspaceBytes(int64_t pairs, int64_t dim, int64_t ffn);

// For each local expert in id order, its pairs in row then choice order:
// out[p] = w2[e] (silu(min(w1[e] x, L)) * clamp(w3[e] x, -L, L)), unweighted.
// Returns false when a count, an expert id (neither -1 nor local) or the
// pair capacity is out of range.
bool MoeExpertPairs(const MoeExpertPairsParams& p, void* workspace);

struct MoeWeightedSumParams {
  const float* y = nullptr;      // [tokens, k, dim]: output of expert idx[t, i] at (t, i)
  const int32_t* idx = nullptr;  // [tokens, k]
  const float* w = nullptr;      // [tokens, k]
  float* out = nullptr;          // [tokens, dim], overwritten
  int64_t tokens = 0, dim = 0;
  int k = 0;
};

// out[t] = sum_i w[t,i] * y[t,i], accumulated in increasing expert id (ties
// in choice order) from zero, as MoeExperts does: the same bits.
void MoeWeightedSum(const MoeWeightedSumParams& p);

}  // namespace moegraph::cpu
