// Rotary embedding (see rope.h). One thread per rotated pair; the angle is
// pos * inv_freq in fp32 with full-precision sin/cos, as the reference computes
// it (positions reach 1M, where fast intrinsics lose digits).
#include "kernels/cuda/rope.h"

#include "kernels/cuda/device_common.cuh"

namespace moegraph::cuda {
namespace {

__global__ void RopeKernel(RopeParams p) {
  const int half = p.rope_dim / 2;
  const int64_t total = int64_t{p.tokens} * p.heads * half;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int pair = static_cast<int>(i % half);
    const int64_t th = i / half;  // token * heads + head
    const int64_t t = th / p.heads;
    float angle = static_cast<float>(p.pos[t]) * p.inv_freq[pair];
    if (p.inverse) angle = -angle;
    float s, c;
    sincosf(angle, &s, &c);
    __nv_bfloat16* v = p.x + th * p.width + (p.width - p.rope_dim) + 2 * pair;
    const float a = __bfloat162float(v[0]), b = __bfloat162float(v[1]);
    v[0] = __float2bfloat16(a * c - b * s);
    v[1] = __float2bfloat16(b * c + a * s);
  }
}

}  // namespace

const char* Validate(const RopeParams& p) {
  if (!p.x || !p.pos || !p.inv_freq) return "rope: null pointer";
  if (p.tokens < 0 || p.heads < 1 || p.width < 1) return "rope: bad sizes";
  if (p.rope_dim < 0 || p.rope_dim % 2 != 0 || p.rope_dim > p.width)
    return "rope: rope_dim must be even and at most the width";
  return nullptr;
}

cudaError_t LaunchRope(const RopeParams& p, cudaStream_t stream) {
  if (Validate(p)) return cudaErrorInvalidValue;
  const int64_t total = int64_t{p.tokens} * p.heads * (p.rope_dim / 2);
  if (total == 0) return cudaSuccess;
  int64_t blocks = (total + 255) / 256;
  if (blocks > 65535 * 8) blocks = 65535 * 8;
  RopeKernel<<<static_cast<int>(blocks), 256, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace moegraph::cuda
