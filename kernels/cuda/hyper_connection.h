// Manifold-constrained hyper-connections (dsv4.md "mHC"): the pre site
// (stream norm, the (2+n)n-wide mix, sigmoid gates, Sinkhorn, collapse), the
// post site (re-expansion into n streams) and the head collapse.
//
// The mix (fn @ urms(concat X)) is split over column chunks so that decode
// batches still fill the GPU: a first kernel writes per-chunk partial dot
// products into the caller's workspace, a second reduces them per token.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>

namespace moegraph::cuda {

struct HcPreParams {
  const __nv_bfloat16* X = nullptr;  // [tokens, n, dim] residual streams
  const float* fn = nullptr;         // [(2+n)n, n*dim]
  const float* base = nullptr;       // [(2+n)n]
  const float* scale = nullptr;      // [3]
  __nv_bfloat16* x_in = nullptr;     // [tokens, dim] sub-layer input
  float* post = nullptr;             // [tokens, n]
  float* comb = nullptr;             // [tokens, n, n], C[i][j]
  int tokens = 0, n = 0, dim = 0;
  int sinkhorn_iters = 0;
  float hc_eps = 1e-6f, norm_eps = 1e-6f;
  // Optional, fused: normed = RmsNorm(x_in) * norm_weight (eps norm_eps),
  // the bits LaunchRmsNorm's block kernel gives.
  const float* norm_weight = nullptr;  // [dim], or null for the unweighted norm
  __nv_bfloat16* normed = nullptr;     // [tokens, dim]
};
const char* Validate(const HcPreParams& p);
size_t HcPreWorkspaceBytes(const HcPreParams& p);
cudaError_t LaunchHcPre(const HcPreParams& p, void* workspace, cudaStream_t stream);

// Xout[t, j, :] = post[t, j] * y[t, :] + sum_i comb[t, i, j] * X[t, i, :].
struct HcPostParams {
  const __nv_bfloat16* X = nullptr;  // [tokens, n, dim]
  const __nv_bfloat16* y = nullptr;  // [tokens, dim]
  const float* post = nullptr;       // [tokens, n]
  const float* comb = nullptr;       // [tokens, n, n]
  __nv_bfloat16* Xout = nullptr;     // [tokens, n, dim], must not alias X
  int tokens = 0, n = 0, dim = 0;
};
const char* Validate(const HcPostParams& p);
cudaError_t LaunchHcPost(const HcPostParams& p, cudaStream_t stream);

// y = sum_i pre[i] X[i] with pre = sigmoid((fn @ urms(X)) * scale + base) + eps.
struct HcHeadParams {
  const __nv_bfloat16* X = nullptr;  // [tokens, n, dim]
  const float* fn = nullptr;         // [n, n*dim]
  const float* base = nullptr;       // [n]
  const float* scale = nullptr;      // [1]
  __nv_bfloat16* y = nullptr;        // [tokens, dim]
  int tokens = 0, n = 0, dim = 0;
  float hc_eps = 1e-6f, norm_eps = 1e-6f;
};
const char* Validate(const HcHeadParams& p);
size_t HcHeadWorkspaceBytes(const HcHeadParams& p);
cudaError_t LaunchHcHead(const HcHeadParams& p, void* workspace, cudaStream_t stream);

}  // namespace moegraph::cuda
