// RMSNorm (see norm.h). One warp per row when rows are short, one block per
// row otherwise; each thread keeps its slice of the row in registers between
// the two passes when it fits, so x is read once.
#include "kernels/cuda/norm.h"

#include "kernels/cuda/device_common.cuh"

namespace moegraph::cuda {
namespace {

// Block per row; the row is read twice (the second read hits L1/L2).
__global__ void RmsNormBlockKernel(RmsNormParams p) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const __nv_bfloat16* x = p.x + row * p.cols;
  __nv_bfloat16* y = p.y + row * p.cols;
  float ss = 0.0f;
  for (int c = threadIdx.x; c < p.cols; c += blockDim.x) {
    const float v = __bfloat162float(x[c]);
    ss += v * v;
  }
  ss = BlockSum(ss, scratch);
  const float inv = rsqrtf(ss / p.cols + p.eps);
  for (int c = threadIdx.x; c < p.cols; c += blockDim.x) {
    float v = __bfloat162float(x[c]) * inv;
    if (p.weight) v *= p.weight[c];
    y[c] = __float2bfloat16(v);
  }
}

// Warp per row, for rows of at most 1024 values.
__global__ void RmsNormWarpKernel(RmsNormParams p) {
  const int64_t row = int64_t{blockIdx.x} * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (row >= p.rows) return;
  const __nv_bfloat16* x = p.x + row * p.cols;
  __nv_bfloat16* y = p.y + row * p.cols;
  float vals[32];
  float ss = 0.0f;
#pragma unroll
  for (int i = 0; i < 32; ++i) {
    const int c = lane + 32 * i;
    vals[i] = c < p.cols ? __bfloat162float(x[c]) : 0.0f;
    ss += vals[i] * vals[i];
  }
  ss = WarpSum(ss);
  const float inv = rsqrtf(ss / p.cols + p.eps);
#pragma unroll
  for (int i = 0; i < 32; ++i) {
    const int c = lane + 32 * i;
    if (c < p.cols) y[c] = __float2bfloat16(vals[i] * inv * (p.weight ? p.weight[c] : 1.0f));
  }
}

}  // namespace

const char* Validate(const RmsNormParams& p) {
  if (!p.x || !p.y) return "rms_norm: null pointer";
  if (p.rows < 0 || p.cols < 1) return "rms_norm: bad sizes";
  return nullptr;
}

cudaError_t LaunchRmsNorm(const RmsNormParams& p, cudaStream_t stream) {
  if (Validate(p)) return cudaErrorInvalidValue;
  if (p.rows == 0) return cudaSuccess;
  if (p.cols <= 1024 && p.rows >= 64) {
    constexpr int kWarps = 8;
    RmsNormWarpKernel<<<(p.rows + kWarps - 1) / kWarps, kWarps * 32, 0, stream>>>(p);
  } else {
    const int threads = p.cols >= 2048 ? 512 : (p.cols >= 512 ? 256 : 128);
    RmsNormBlockKernel<<<p.rows, threads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

}  // namespace moegraph::cuda
