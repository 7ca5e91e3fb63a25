// MoE routing (dsv4.md "MoE"): s = sqrt(softplus(logits)); experts by top-k
// of s + bias, or by the token's row of tid2eid (hash layers); weights
// w = s[idx] / (sum s[idx] + 1e-20) * routed_scaling. No workspace.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace moegraph::cuda {

struct RouteParams {
  const float* logits = nullptr;       // [tokens, experts]
  const float* bias = nullptr;         // [experts] or null (top-k mode only)
  const int32_t* tid2eid = nullptr;    // [vocab, k] or null for top-k mode
  const int32_t* token_ids = nullptr;  // [tokens] (hash mode)
  int64_t vocab = 0;                   // rows of tid2eid
  int32_t* idx = nullptr;              // [tokens, k]
  float* w = nullptr;                  // [tokens, k]
  int tokens = 0, experts = 0, k = 0;
  float routed_scaling = 1.0f;
};
constexpr int kRouteMaxExperts = 1024;
constexpr int kRouteMaxK = 16;
const char* Validate(const RouteParams& p);
cudaError_t LaunchRoute(const RouteParams& p, cudaStream_t stream);

}  // namespace moegraph::cuda
