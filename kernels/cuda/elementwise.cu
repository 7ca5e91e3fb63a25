// Element-wise kernels (see elementwise.h). Grid-stride loops: these are tiny
// next to the matrix products and need no tuning beyond coalescing.
#include "kernels/cuda/elementwise.h"

#include <cmath>
#include <type_traits>

#include "kernels/cuda/device_common.cuh"

namespace moegraph::cuda {
namespace {

constexpr int kThreads = 256;

int GridFor(int64_t n) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  if (blocks > 65535LL * 16) blocks = 65535LL * 16;
  return static_cast<int>(blocks < 1 ? 1 : blocks);
}

template <typename T>
__global__ void EmbedKernel(EmbedParams p, const T* table) {
  const int64_t total = static_cast<int64_t>(p.tokens) * p.streams * p.dim;
  for (int64_t i = blockIdx.x * int64_t{kThreads} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * kThreads) {
    const int64_t t = i / (int64_t{p.streams} * p.dim);
    const int c = static_cast<int>(i % p.dim);
    const int id = p.ids[t];
    const float v = (id >= 0 && id < p.vocab) ? Load(table + int64_t{id} * p.dim + c) : NAN;
    p.out[i] = __float2bfloat16(v);
  }
}

__global__ void AddKernel(const __nv_bfloat16* a, const __nv_bfloat16* b, __nv_bfloat16* out,
                          int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{kThreads} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * kThreads) {
    out[i] = __float2bfloat16(__bfloat162float(a[i]) + __bfloat162float(b[i]));
  }
}

template <typename T>
__global__ void ScaleKernel(const T* x, float alpha, T* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{kThreads} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * kThreads) {
    Store(out + i, Load(x + i) * alpha);
  }
}

__global__ void SwiGluKernel(const __nv_bfloat16* a, const __nv_bfloat16* b, float limit,
                             __nv_bfloat16* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{kThreads} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * kThreads) {
    float x = __bfloat162float(a[i]), y = __bfloat162float(b[i]);
    if (limit > 0.0f) {
      x = fminf(x, limit);
      y = fminf(fmaxf(y, -limit), limit);
    }
    out[i] = __float2bfloat16(x / (1.0f + expf(-x)) * y);
  }
}

__global__ void GatherRowsKernel(const uint16_t* x, int64_t num_rows, const int32_t* rows, int n,
                                 int64_t row_elems, uint16_t* out) {
  const int64_t total = static_cast<int64_t>(n) * row_elems;
  for (int64_t i = blockIdx.x * int64_t{kThreads} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * kThreads) {
    const int64_t r = i / row_elems, c = i % row_elems;
    const int src = rows[r];
    if (src >= 0 && src < num_rows) out[i] = x[src * row_elems + c];
  }
}

__global__ void TakeSampledIdsKernel(int32_t* ids, const int32_t* from, int n,
                                     const int32_t* sampled, int m) {
  for (int i = blockIdx.x * kThreads + threadIdx.x; i < n; i += gridDim.x * kThreads) {
    const int f = from[i];
    if (f >= 0 && f < m) ids[i] = sampled[f];
  }
}

template <typename From, typename To>
__global__ void ConvertKernel(const From* x, To* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{kThreads} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * kThreads) {
    if constexpr (std::is_same_v<From, To>) {
      out[i] = x[i];
    } else {
      Store(out + i, Load(x + i));
    }
  }
}

template <typename T>
__global__ void FillKernel(T* out, int64_t n, T value) {
  for (int64_t i = blockIdx.x * int64_t{kThreads} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * kThreads) {
    out[i] = value;
  }
}

}  // namespace

const char* Validate(const EmbedParams& p) {
  if (!p.ids || !p.table || !p.out) return "embed: null pointer";
  if (p.tokens < 0 || p.streams < 1 || p.dim < 1 || p.vocab < 1) return "embed: bad sizes";
  if (p.table_type == ElemType::kI32) return "embed: table must be f32 or bf16";
  return nullptr;
}

cudaError_t LaunchEmbed(const EmbedParams& p, cudaStream_t stream) {
  if (Validate(p)) return cudaErrorInvalidValue;
  if (p.tokens == 0) return cudaSuccess;
  const int grid = GridFor(int64_t{p.tokens} * p.streams * p.dim);
  if (p.table_type == ElemType::kBF16) {
    EmbedKernel<<<grid, kThreads, 0, stream>>>(p, static_cast<const __nv_bfloat16*>(p.table));
  } else {
    EmbedKernel<<<grid, kThreads, 0, stream>>>(p, static_cast<const float*>(p.table));
  }
  return cudaGetLastError();
}

cudaError_t LaunchAdd(const __nv_bfloat16* a, const __nv_bfloat16* b, __nv_bfloat16* out, int64_t n,
                      cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  AddKernel<<<GridFor(n), kThreads, 0, stream>>>(a, b, out, n);
  return cudaGetLastError();
}

cudaError_t LaunchScale(const void* x, float alpha, void* out, ElemType type, int64_t n,
                        cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  if (type == ElemType::kF32) {
    ScaleKernel<<<GridFor(n), kThreads, 0, stream>>>(static_cast<const float*>(x), alpha,
                                                     static_cast<float*>(out), n);
  } else if (type == ElemType::kBF16) {
    ScaleKernel<<<GridFor(n), kThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(x), alpha,
                                                     static_cast<__nv_bfloat16*>(out), n);
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t LaunchSwiGlu(const __nv_bfloat16* a, const __nv_bfloat16* b, float limit,
                         __nv_bfloat16* out, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  SwiGluKernel<<<GridFor(n), kThreads, 0, stream>>>(a, b, limit, out, n);
  return cudaGetLastError();
}

cudaError_t LaunchGatherRows(const void* x, int64_t num_rows, const int32_t* rows, int n,
                             int64_t row_bytes, void* out, cudaStream_t stream) {
  if (row_bytes % 2 != 0) return cudaErrorInvalidValue;
  if (n <= 0 || row_bytes == 0) return cudaSuccess;
  const int64_t row_elems = row_bytes / 2;
  GatherRowsKernel<<<GridFor(n * row_elems), kThreads, 0, stream>>>(
      static_cast<const uint16_t*>(x), num_rows, rows, n, row_elems, static_cast<uint16_t*>(out));
  return cudaGetLastError();
}

cudaError_t LaunchTakeSampledIds(int32_t* ids, const int32_t* from, int n, const int32_t* sampled,
                                 int m, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  TakeSampledIdsKernel<<<GridFor(n), kThreads, 0, stream>>>(ids, from, n, sampled, m);
  return cudaGetLastError();
}

cudaError_t LaunchConvert(const void* x, ElemType from, void* out, ElemType to, int64_t n,
                          cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  const int grid = GridFor(n);
  if (from == ElemType::kF32 && to == ElemType::kBF16) {
    ConvertKernel<<<grid, kThreads, 0, stream>>>(static_cast<const float*>(x),
                                                 static_cast<__nv_bfloat16*>(out), n);
  } else if (from == ElemType::kBF16 && to == ElemType::kF32) {
    ConvertKernel<<<grid, kThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(x),
                                                 static_cast<float*>(out), n);
  } else if (from == to) {
    const size_t bytes = static_cast<size_t>(n) * (from == ElemType::kBF16 ? 2 : 4);
    return cudaMemcpyAsync(out, x, bytes, cudaMemcpyDeviceToDevice, stream);
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t LaunchFill(void* out, ElemType type, int64_t n, float value, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  const int grid = GridFor(n);
  switch (type) {
    case ElemType::kF32:
      FillKernel<<<grid, kThreads, 0, stream>>>(static_cast<float*>(out), n, value);
      break;
    case ElemType::kBF16:
      FillKernel<<<grid, kThreads, 0, stream>>>(static_cast<__nv_bfloat16*>(out), n,
                                                __float2bfloat16(value));
      break;
    case ElemType::kI32:
      FillKernel<<<grid, kThreads, 0, stream>>>(static_cast<int32_t*>(out), n,
                                                static_cast<int32_t>(value));
      break;
  }
  return cudaGetLastError();
}

namespace {
__global__ void ScatterPairsKernel(int32_t* dst, const int32_t* pairs, const int32_t* count,
                                   int capacity) {
  const int n = min(*count, capacity);
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    dst[pairs[2 * i]] = pairs[2 * i + 1];
}
}  // namespace

cudaError_t LaunchScatterPairs(int32_t* dst, const int32_t* pairs, const int32_t* count,
                               int capacity, cudaStream_t stream) {
  if (!dst || !pairs || !count || capacity < 0) return cudaErrorInvalidValue;
  if (capacity == 0) return cudaSuccess;
  ScatterPairsKernel<<<1, 256, 0, stream>>>(dst, pairs, count, capacity);
  return cudaGetLastError();
}

}  // namespace moegraph::cuda
