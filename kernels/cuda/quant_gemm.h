// y[R, N] = x[R, K] W^T for an FP8 (128x128-block scaled) or FP4 (1x32 E8M0
// scaled) weight: a tensor-core GEMM that dequantizes W to bf16 in its main
// loop (Hopper has no FP4 tensor cores; W8A16/W4A16 here: activations stay
// bf16, fp32 accumulation). The weight moves compressed, kStages tiles ahead
// (quant_tile.cuh). Decode sizes split K so that enough blocks stream
// the weight (one block per 64 columns alone leaves most SMs idle); the split
// partials are summed in a second pass, in a fixed order (deterministic).
// Products of 1-4 rows run on the CUDA cores instead (gemv_chunk.cuh): each
// weight is used for 1-4 multiply-adds there, and streaming the stored bytes
// beats the dequantizing tile walk (H200, FP8 1024->32768 at one row: 15.9
// against 23.2 us).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/quant_format.h"

namespace moegraph::cuda {

struct QuantLinearParams {
  const __nv_bfloat16* x = nullptr;  // [rows, k]
  WeightFmt fmt = WeightFmt::kFp8;
  QuantOperand w;     // one [n, k] matrix (quant_format.h)
  void* y = nullptr;  // [rows, n] bf16 or f32
  bool y_f32 = false;
  int rows = 0, n = 0, k = 0;
  int ldx = 0, ldy = 0;  // row strides of x and y (0: k and n)
  int scale_rows = 0;    // rows of the FP4 scale planes (0: n; more for a row block)
  // A block-diagonal product in one launch: group g multiplies x's columns
  // [g k, (g + 1) k) by weight rows [g n, (g + 1) n) into y's columns
  // [g n, (g + 1) n) (the grouped output projection; FP8 needs n % 128 == 0).
  int groups = 1;
  int num_sms = 132;  // for choosing the K split
};
const char* Validate(const QuantLinearParams& p);
size_t QuantLinearWorkspaceBytes(const QuantLinearParams& p);
cudaError_t LaunchQuantLinear(const QuantLinearParams& p, void* workspace, cudaStream_t stream);

}  // namespace moegraph::cuda
