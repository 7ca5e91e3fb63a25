// The reference's activation quantization on the device, for the W8A8
// products: each row of x (bf16) in groups of 128 along K gets s = amax / 448
// (amax floored at 1e-4; rounded up to a power of two when pow2_scales, as
// scale_fmt "ue8m0" asks) and q = e4m3(x / s), round to nearest even,
// saturating. The scales are laid out K-block-major, scale[g * rows + r], the
// layout cuBLASLt's CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F reads for the
// activations (kernels/cpu/quant.h's QuantizeActivationRow is the host twin).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace moegraph::cuda {

struct ActQuantParams {
  const __nv_bfloat16* x = nullptr;  // [rows, k], row stride ldx
  uint8_t* q = nullptr;              // e4m3 [rows, k], contiguous
  float* scale = nullptr;            // [k / 128, rows]
  int rows = 0, k = 0, ldx = 0;
  bool pow2_scales = false;
};
const char* Validate(const ActQuantParams& p);
cudaError_t LaunchActQuant(const ActQuantParams& p, cudaStream_t stream);

}  // namespace moegraph::cuda
