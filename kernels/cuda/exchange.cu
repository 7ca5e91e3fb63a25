#include <cub/block/block_scan.cuh>

#include "kernels/cuda/exchange.h"

namespace moegraph::cuda {
namespace {

constexpr int kRouteThreads = 512;
constexpr int kCopyThreads = 128;

// One row of `bytes` bytes, 16 at a time where both ends allow it.
__device__ void CopyRow(char* dst, const char* src, int bytes) {
  const bool wide = bytes % 16 == 0 && reinterpret_cast<uintptr_t>(dst) % 16 == 0 &&
                    reinterpret_cast<uintptr_t>(src) % 16 == 0;
  if (wide) {
    const uint4* s = reinterpret_cast<const uint4*>(src);
    uint4* d = reinterpret_cast<uint4*>(dst);
    for (int i = threadIdx.x; i < bytes / 16; i += blockDim.x) d[i] = s[i];
  } else {
    for (int i = threadIdx.x; i < bytes; i += blockDim.x) dst[i] = src[i];
  }
}

__device__ bool Holds(const ExchangeDispatchArgs& a, int e, int rank) {
  return e >= 0 && e < a.num_experts && a.owner[e] == rank;
}

// Block r: which tokens go to rank r, their rows there (a scan keeps token
// order), their ids and source token, and the count.
__global__ void DispatchRouteKernel(ExchangeDispatchArgs a) {
  using Scan = cub::BlockScan<int, kRouteThreads>;
  __shared__ typename Scan::TempStorage temp;
  __shared__ int base;
  const int r = blockIdx.x;
  if (threadIdx.x == 0) base = 0;
  __syncthreads();
  for (int t0 = 0; t0 < a.tokens; t0 += kRouteThreads) {
    const int t = t0 + threadIdx.x;
    int want = 0;
    if (t < a.tokens) {
      for (int i = 0; i < a.k; ++i) want |= Holds(a, a.idx[t * a.k + i], r) ? 1 : 0;
    }
    int pos = 0, total = 0;
    Scan(temp).ExclusiveSum(want, pos, total);
    if (t < a.tokens) {
      const int row = base + pos;
      a.rows[t * a.num_ranks + r] = want ? row : -1;
      if (want) {
        for (int i = 0; i < a.k; ++i) {
          const int e = a.idx[t * a.k + i];
          a.experts_to[r][row * a.k + i] = Holds(a, e, r) ? e : -1;
        }
        a.src_to[r][row] = t;
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) base += total;
    __syncthreads();
  }
  if (threadIdx.x == 0) *a.count_to[r] = base;
}

// Block t: token t's row to each rank the route kernel chose.
__global__ void DispatchCopyKernel(ExchangeDispatchArgs a) {
  const int t = blockIdx.x;
  const int bytes = a.dim * a.elem_bytes;
  const char* src = static_cast<const char*>(a.x) + static_cast<int64_t>(t) * bytes;
  for (int r = 0; r < a.num_ranks; ++r) {
    const int row = a.rows[t * a.num_ranks + r];
    if (row < 0) continue;
    CopyRow(static_cast<char*>(a.x_to[r]) + static_cast<int64_t>(row) * bytes, src, bytes);
  }
}

__global__ void CombineKernel(ExchangeCombineArgs a) {
  const int n = min(*a.pair_count, a.max_pairs);
  const int bytes = a.dim * a.elem_bytes;
  for (int p = blockIdx.x; p < n; p += gridDim.x) {
    const int dst = a.pair_dst[p];
    if (dst < 0) continue;
    const int row = dst / a.k, choice = dst % a.k, src = row / a.capacity;
    if (src >= a.num_ranks || row % a.capacity >= a.counts[src]) continue;
    const int token = a.src_token[row];
    if (token < 0 || token >= a.capacity) continue;
    CopyRow(
        static_cast<char*>(a.combined[src]) + (static_cast<int64_t>(token) * a.k + choice) * bytes,
        static_cast<const char*>(a.out) + static_cast<int64_t>(p) * bytes, bytes);
  }
}

// Block t: token t's k outputs, each from the rank holding its expert.
__global__ void MergeKernel(ExchangeMergeArgs a) {
  const int t = blockIdx.x;
  const int bytes = a.dim * a.elem_bytes;
  for (int i = 0; i < a.k; ++i) {
    const int e = a.idx[t * a.k + i];
    if (e < 0 || e >= a.num_experts) continue;
    const int r = a.owner[e];
    if (r < 0 || r >= a.num_ranks) continue;
    const int64_t at = (static_cast<int64_t>(t) * a.k + i) * bytes;
    CopyRow(static_cast<char*>(a.combined) + at, static_cast<const char*>(a.from[r]) + at, bytes);
  }
}

__device__ long long GlobalNs() {
  long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Thread r < num_ranks waits for rank r. The counter is read and bumped by
// thread 0 only; the block's barrier publishes it to the waiters.
__global__ void MeetKernel(ExchangeMeetArgs a) {
  __shared__ int32_t call;
  if (threadIdx.x == 0) {
    call = *a.calls + 1;
    *a.calls = call;
    __threadfence_system();
    for (int r = 0; r < a.num_ranks; ++r) {
      *reinterpret_cast<volatile int32_t*>(a.mailbox[r]) = call;
    }
    __threadfence_system();
  }
  __syncthreads();
  const int r = threadIdx.x;
  if (r < a.num_ranks) {
    const volatile int32_t* in = a.inbox + r;
    const volatile int32_t* stop = a.stop;  // also set by a peer that gave up
    const long long deadline = GlobalNs() + a.timeout_ns;
    // The host word is a PCIe read: looked at once every 256 polls.
    for (unsigned polls = 1;
         static_cast<int32_t>(static_cast<uint32_t>(*in) - static_cast<uint32_t>(call)) < 0;
         ++polls) {
      if (polls % 256 == 0) {
        if (*stop != 0) break;
        if (GlobalNs() > deadline) {
          *reinterpret_cast<volatile int32_t*>(a.gave_up) = call;
          *reinterpret_cast<volatile int32_t*>(a.stop) = 1;
          break;
        }
      }
      __nanosleep(32);
    }
  }
  __threadfence_system();
  __syncthreads();
}

}  // namespace

cudaError_t LaunchExchangeMeet(const ExchangeMeetArgs& a, cudaStream_t stream) {
  if (a.num_ranks < 1 || a.num_ranks > kMaxExchangeRanks || a.rank < 0 || a.rank >= a.num_ranks ||
      a.calls == nullptr || a.inbox == nullptr || a.stop == nullptr || a.gave_up == nullptr ||
      a.timeout_ns <= 0) {
    return cudaErrorInvalidValue;
  }
  MeetKernel<<<1, 32, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t PreloadExchangeKernels() {
  cudaFuncAttributes attr;
  for (const void* f :
       {reinterpret_cast<const void*>(MeetKernel), reinterpret_cast<const void*>(MergeKernel),
        reinterpret_cast<const void*>(DispatchRouteKernel),
        reinterpret_cast<const void*>(DispatchCopyKernel),
        reinterpret_cast<const void*>(CombineKernel)}) {
    if (const cudaError_t e = cudaFuncGetAttributes(&attr, f); e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

cudaError_t LaunchExchangeMerge(const ExchangeMergeArgs& a, cudaStream_t stream) {
  if (a.num_ranks < 1 || a.num_ranks > kMaxExchangeRanks || a.tokens < 0) {
    return cudaErrorInvalidValue;
  }
  if (a.tokens > 0) MergeKernel<<<a.tokens, kCopyThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t LaunchExchangeDispatch(const ExchangeDispatchArgs& a, cudaStream_t stream) {
  if (a.num_ranks < 1 || a.num_ranks > kMaxExchangeRanks || a.tokens < 0) {
    return cudaErrorInvalidValue;
  }
  DispatchRouteKernel<<<a.num_ranks, kRouteThreads, 0, stream>>>(a);
  if (a.tokens > 0) DispatchCopyKernel<<<a.tokens, kCopyThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t LaunchExchangeCombine(const ExchangeCombineArgs& a, cudaStream_t stream) {
  if (a.num_ranks < 1 || a.num_ranks > kMaxExchangeRanks || a.max_pairs < 0) {
    return cudaErrorInvalidValue;
  }
  if (a.max_pairs == 0) return cudaSuccess;
  const int blocks = a.max_pairs < 1024 ? a.max_pairs : 1024;
  CombineKernel<<<blocks, kCopyThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace moegraph::cuda
