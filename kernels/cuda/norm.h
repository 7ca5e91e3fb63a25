// RMSNorm over rows: y = x / sqrt(mean(x^2) + eps) * (weight or 1). bf16 in
// and out, statistics in fp32. No workspace.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

namespace moegraph::cuda {

struct RmsNormParams {
  const __nv_bfloat16* x = nullptr;  // [rows, cols]
  const float* weight = nullptr;     // [cols], or null for the unweighted norm
  __nv_bfloat16* y = nullptr;        // [rows, cols]; may alias x
  int rows = 0, cols = 0;
  float eps = 1e-6f;
};
const char* Validate(const RmsNormParams& p);
cudaError_t LaunchRmsNorm(const RmsNormParams& p, cudaStream_t stream);

}  // namespace moegraph::cuda
