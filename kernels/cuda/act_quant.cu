// Activation quantization to e4m3 in 1x128 groups (see act_quant.h).
#include <cuda_fp8.h>

#include "kernels/cuda/act_quant.h"

namespace moegraph::cuda {
namespace {

constexpr int kGroup = 128;
constexpr int kWarpsPerBlock = 8;

// One warp per (row, group): each lane holds 4 consecutive values.
__global__ void __launch_bounds__(32 * kWarpsPerBlock) ActQuantKernel(ActQuantParams p) {
  const int groups = p.k / kGroup;
  const int64_t item = int64_t{blockIdx.x} * kWarpsPerBlock + threadIdx.x / 32;
  if (item >= int64_t{p.rows} * groups) return;
  const int lane = threadIdx.x & 31;
  const int r = static_cast<int>(item / groups), g = static_cast<int>(item % groups);
  const int col = g * kGroup + lane * 4;
  const __nv_bfloat16* src = p.x + int64_t{r} * p.ldx + col;
  const __nv_bfloat162 lo = *reinterpret_cast<const __nv_bfloat162*>(src);
  const __nv_bfloat162 hi = *reinterpret_cast<const __nv_bfloat162*>(src + 2);
  const float v[4] = {__low2float(lo), __high2float(lo), __low2float(hi), __high2float(hi)};
  float amax = 1e-4f;
#pragma unroll
  for (int i = 0; i < 4; ++i) amax = fmaxf(amax, fabsf(v[i]));
#pragma unroll
  for (int off = 16; off > 0; off >>= 1)
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
  float s = amax / 448.0f;
  if (p.pow2_scales) s = exp2f(ceilf(log2f(s)));
  uint32_t packed = 0;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const __nv_fp8_storage_t b = __nv_cvt_float_to_fp8(v[i] / s, __NV_SATFINITE, __NV_E4M3);
    packed |= static_cast<uint32_t>(b) << (8 * i);
  }
  *reinterpret_cast<uint32_t*>(p.q + int64_t{r} * p.k + col) = packed;
  if (lane == 0) p.scale[int64_t{g} * p.rows + r] = s;
}

}  // namespace

const char* Validate(const ActQuantParams& p) {
  if (p.rows < 0 || p.k <= 0) return "rows must be >= 0 and k > 0";
  if (p.k % kGroup != 0) return "k must be a multiple of 128";
  if (p.ldx < p.k || p.ldx % 4 != 0) return "ldx must be >= k and a multiple of 4";
  if (!p.x || !p.q || !p.scale) return "null operand";
  if (reinterpret_cast<uintptr_t>(p.x) % 8 != 0) return "x must be 8-byte aligned";
  if (reinterpret_cast<uintptr_t>(p.q) % 4 != 0) return "q must be 4-byte aligned";
  return nullptr;
}

cudaError_t LaunchActQuant(const ActQuantParams& p, cudaStream_t stream) {
  const int64_t items = int64_t{p.rows} * (p.k / kGroup);
  if (items == 0) return cudaSuccess;
  const int64_t blocks = (items + kWarpsPerBlock - 1) / kWarpsPerBlock;
  ActQuantKernel<<<static_cast<unsigned>(blocks), 32 * kWarpsPerBlock, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace moegraph::cuda
