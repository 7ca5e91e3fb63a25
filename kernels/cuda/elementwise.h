// Element-wise and row-copy kernels: embedding lookup, add, clamped SwiGLU,
// row gather, dtype conversion and fill. No workspace.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace moegraph::cuda {

// Element types these kernels move. kBF16 activations, kF32 statistics.
enum class ElemType : uint8_t { kF32, kBF16, kI32 };

// out[t, s, :] = table[ids[t], :] for s in [0, streams). An id outside
// [0, vocab) writes NaN rows (the device cannot report it without a sync).
struct EmbedParams {
  const int32_t* ids = nullptr;  // [tokens]
  const void* table = nullptr;   // [vocab, dim], table_type
  ElemType table_type = ElemType::kBF16;
  __nv_bfloat16* out = nullptr;  // [tokens, streams, dim]
  int64_t vocab = 0;
  int tokens = 0, streams = 0, dim = 0;
};
const char* Validate(const EmbedParams& p);
cudaError_t LaunchEmbed(const EmbedParams& p, cudaStream_t stream);

// out = a + b over n bf16 values (out may alias a or b).
cudaError_t LaunchAdd(const __nv_bfloat16* a, const __nv_bfloat16* b, __nv_bfloat16* out, int64_t n,
                      cudaStream_t stream);

// out = x * alpha over n values of `type` (f32 or bf16; out may alias x).
cudaError_t LaunchScale(const void* x, float alpha, void* out, ElemType type, int64_t n,
                        cudaStream_t stream);

// out = silu(min(a, limit)) * clamp(b, -limit, limit) over n values, math in
// fp32; limit <= 0 means no clamp.
cudaError_t LaunchSwiGlu(const __nv_bfloat16* a, const __nv_bfloat16* b, float limit,
                         __nv_bfloat16* out, int64_t n, cudaStream_t stream);

// out[i, :] = x[rows[i], :] for i in [0, n); row_bytes a multiple of 2.
// A row index outside [0, num_rows) leaves its output row untouched.
cudaError_t LaunchGatherRows(const void* x, int64_t num_rows, const int32_t* rows, int n,
                             int64_t row_bytes, void* out, cudaStream_t stream);

// ids[i] = sampled[from[i]] for i in [0, n) where 0 <= from[i] < m.
cudaError_t LaunchTakeSampledIds(int32_t* ids, const int32_t* from, int n, const int32_t* sampled,
                                 int m, cudaStream_t stream);

// out = x converted element by element (f32 <-> bf16, or a copy).
cudaError_t LaunchConvert(const void* x, ElemType from, void* out, ElemType to, int64_t n,
                          cudaStream_t stream);

// Every element of out = value (rounded to bf16, or truncated to i32).
cudaError_t LaunchFill(void* out, ElemType type, int64_t n, float value, cudaStream_t stream);

// dst[pairs[2i]] = pairs[2i + 1] for i < min(*count, capacity). The count is
// read on the device, so the launch has one shape whatever the step carries
// (page-table changes applied inside a captured graph).
cudaError_t LaunchScatterPairs(int32_t* dst, const int32_t* pairs, const int32_t* count,
                               int capacity, cudaStream_t stream);

}  // namespace moegraph::cuda
