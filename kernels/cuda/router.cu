// Router kernel (see router.h): one warp per token; the top-k is k rounds of
// a warp arg-max (ties: lower expert id), scores staged in shared memory.
#include "kernels/cuda/router.h"

#include "kernels/cuda/device_common.cuh"

namespace moegraph::cuda {
namespace {

constexpr int kWarps = 4;

__device__ __forceinline__ float SqrtSoftplus(float x) {
  const float sp = x > 20.0f ? x : log1pf(expf(x));
  return sqrtf(sp);
}

__global__ void RouteKernel(RouteParams p) {
  __shared__ float sel_score[kWarps][kRouteMaxExperts];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int t = blockIdx.x * kWarps + warp;
  if (t >= p.tokens) return;
  const float* logit = p.logits + int64_t{t} * p.experts;
  int chosen[kRouteMaxK];
  if (p.tid2eid) {
    const int id = p.token_ids[t];
    const bool ok = id >= 0 && id < p.vocab;
    for (int i = 0; i < p.k; ++i) chosen[i] = ok ? p.tid2eid[int64_t{id} * p.k + i] : -1;
  } else {
    float* sc = sel_score[warp];
    for (int e = lane; e < p.experts; e += 32)
      sc[e] = SqrtSoftplus(logit[e]) + (p.bias ? p.bias[e] : 0.0f);
    __syncwarp();
    for (int i = 0; i < p.k; ++i) {
      float best = -INFINITY;
      int best_e = 0x7fffffff;
      for (int e = lane; e < p.experts; e += 32) {
        if (sc[e] > best) {  // strictly greater: the lane's lowest id wins ties
          best = sc[e];
          best_e = e;
        }
      }
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) {
        const float ob = __shfl_xor_sync(0xffffffffu, best, o);
        const int oe = __shfl_xor_sync(0xffffffffu, best_e, o);
        if (ob > best || (ob == best && oe < best_e)) {
          best = ob;
          best_e = oe;
        }
      }
      chosen[i] = best_e;
      __syncwarp();
      if (lane == 0 && best_e < p.experts) sc[best_e] = -INFINITY;
      __syncwarp();
    }
  }
  if (lane == 0) {
    float sum = 0.0f;
    float s[kRouteMaxK];
    for (int i = 0; i < p.k; ++i) {
      const int e = chosen[i];
      s[i] = (e >= 0 && e < p.experts) ? SqrtSoftplus(logit[e]) : 0.0f;
      sum += s[i];
    }
    for (int i = 0; i < p.k; ++i) {
      p.idx[int64_t{t} * p.k + i] = chosen[i];
      p.w[int64_t{t} * p.k + i] = s[i] / (sum + 1e-20f) * p.routed_scaling;
    }
  }
}

}  // namespace

const char* Validate(const RouteParams& p) {
  if (!p.logits || !p.idx || !p.w) return "route: null pointer";
  if (p.tid2eid && (!p.token_ids || p.vocab < 1)) return "route: hash mode needs token ids";
  if (p.tokens < 0 || p.experts < 1 || p.experts > kRouteMaxExperts) return "route: bad experts";
  if (p.k < 1 || p.k > kRouteMaxK || p.k > p.experts) return "route: bad k";
  return nullptr;
}

cudaError_t LaunchRoute(const RouteParams& p, cudaStream_t stream) {
  if (Validate(p)) return cudaErrorInvalidValue;
  if (p.tokens == 0) return cudaSuccess;
  RouteKernel<<<(p.tokens + kWarps - 1) / kWarps, kWarps * 32, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace moegraph::cuda
