// Indexer kernels (see indexer.h). Scores: one thread per entry holding the
// entry's key in registers, the token's queries broadcast from shared memory.
// Top-k: one block per token; a 4-pass radix select on order-preserving keys
// finds the k-th score, ties at it are taken in id order with a block scan,
// and the k winners are sorted by (score desc, id asc).
#include "kernels/cuda/indexer.h"

#include <algorithm>
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_scan.cuh>

#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/dispatch.h"
#include "kernels/cuda/launch_util.h"
#include "kernels/cuda/mma.cuh"

namespace moegraph::cuda {
namespace {

constexpr int kScoreThreads = 128;
constexpr int kTopkThreads = 512;
constexpr int kSortItems = kIndexerMaxK / kTopkThreads;

__device__ __forceinline__ int Visible(int pos, int rate, int max_entries) {
  return min((pos + 1) / rate, max_entries);
}

template <int C>
__global__ void __launch_bounds__(kScoreThreads) ScoreKernel(IndexerTopKParams p, float* scores) {
  extern __shared__ float smem[];  // q [heads][C], then weights [heads]
  float* qs = smem;
  float* ws = smem + p.heads * C;
  const int t = blockIdx.y;
  const int nvis = Visible(p.token_pos[t], p.rate, p.max_entries);
  // The grid is sized for max_entries (a capacity in captured graphs); blocks
  // stride over the visible entries and leave the rest unwritten (top-k
  // reads only entries < nvis).
  if (int(blockIdx.x) * kScoreThreads >= nvis) return;
  float* out = scores + int64_t{t} * p.max_entries;
  const __nv_bfloat16* q = p.q + int64_t{t} * p.heads * C;
  for (int i = threadIdx.x; i < p.heads * C; i += kScoreThreads) qs[i] = __bfloat162float(q[i]);
  for (int i = threadIdx.x; i < p.heads; i += kScoreThreads)
    ws[i] = p.weights[int64_t{t} * p.heads + i];
  __syncthreads();
  const EntryPagesView& K = p.keys;
  const int slot = p.seq_slot[p.token_seq[t]];
  for (int e = blockIdx.x * kScoreThreads + threadIdx.x; e < nvis; e += gridDim.x * kScoreThreads) {
    const int page = K.table[int64_t{slot} * K.max_pages + e / K.page_size];
    const uint4* krow = reinterpret_cast<const uint4*>(
        K.pool + ((int64_t{page} * K.page_size + e % K.page_size) * K.layers + K.layer) * C);
    float key[C];
#pragma unroll
    for (int i = 0; i < C / 8; ++i) {
      const uint4 raw = krow[i];
      const __nv_bfloat162* h2 = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float2 f = __bfloat1622float2(h2[j]);
        key[8 * i + 2 * j] = f.x;
        key[8 * i + 2 * j + 1] = f.y;
      }
    }
    float score = 0.0f;
    for (int h = 0; h < p.heads; ++h) {
      const float4* qh = reinterpret_cast<const float4*>(qs + h * C);
      float dot = 0.0f;
#pragma unroll
      for (int i = 0; i < C / 4; ++i) {
        const float4 qv = qh[i];
        dot += qv.x * key[4 * i] + qv.y * key[4 * i + 1] + qv.z * key[4 * i + 2] +
               qv.w * key[4 * i + 3];
      }
      score += ws[h] * fmaxf(dot, 0.0f);
    }
    out[e] = score * p.softmax_scale;
  }
}

// Tensor-core scorer for head_dim 128 and NH heads (a multiple of 16): a
// block scores 64 entries of one token; warp w takes entries 16w..16w+15
// against all heads, S = Q K^T on mma.m16n8k16, then relu, the head weights
// and the sum over heads in registers and shuffles.
constexpr int kTcC = 128;
constexpr int kTcEntries = 64;
constexpr int kTcStride = kTcC + 8;  // bf16 per smem row (16 B pad)

template <int NH>
__global__ void __launch_bounds__(128) TcScoreKernel(IndexerTopKParams p, float* scores) {
  constexpr int kMT = NH / 16;
  __shared__ __align__(16) __nv_bfloat16 qs[NH * kTcStride];
  __shared__ __align__(16) __nv_bfloat16 ks[kTcEntries * kTcStride];
  __shared__ float ws[NH];
  const int t = blockIdx.y;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int nvis = Visible(p.token_pos[t], p.rate, p.max_entries);
  // Grid sized for max_entries (a capacity in captured graphs): blocks stride
  // over the visible entries in chunks of kTcEntries; entries >= nvis stay
  // unwritten (top-k reads only entries < nvis).
  if (int(blockIdx.x) * kTcEntries >= nvis) return;
  float* out = scores + int64_t{t} * p.max_entries;
  const __nv_bfloat16* q = p.q + int64_t{t} * NH * kTcC;
  for (int i = tid; i < NH * (kTcC / 8); i += 128) {
    const int r = i / (kTcC / 8), ch = i % (kTcC / 8);
    CpAsync16(qs + r * kTcStride + ch * 8, q + int64_t{r} * kTcC + ch * 8, true);
  }
  for (int i = tid; i < NH; i += 128) ws[i] = p.weights[int64_t{t} * NH + i];
  const EntryPagesView& K = p.keys;
  const int slot = p.seq_slot[p.token_seq[t]];
  for (int e0 = blockIdx.x * kTcEntries; e0 < nvis; e0 += gridDim.x * kTcEntries) {
    __syncthreads();  // the previous chunk's keys are consumed
    for (int i = tid; i < kTcEntries * (kTcC / 8); i += 128) {
      const int r = i / (kTcC / 8), ch = i % (kTcC / 8);
      const int e = e0 + r;
      const __nv_bfloat16* src = p.q;
      if (e < nvis) {
        const int page = K.table[int64_t{slot} * K.max_pages + e / K.page_size];
        src = K.pool +
              ((int64_t{page} * K.page_size + e % K.page_size) * K.layers + K.layer) * kTcC +
              ch * 8;
      }
      CpAsync16(ks + r * kTcStride + ch * 8, src, e < nvis);
    }
    CpAsyncCommit();
    CpAsyncWait<0>();
    __syncthreads();

    float acc[kMT][2][4];
#pragma unroll
    for (int m = 0; m < kMT; ++m)
#pragma unroll
      for (int n = 0; n < 2; ++n) acc[m][n][0] = acc[m][n][1] = acc[m][n][2] = acc[m][n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < kTcC / 16; ++kk) {
      uint32_t b[4];
      LdMatrixX4(b, ks + (warp * 16 + ((lane >> 4) << 3) + (lane & 7)) * kTcStride + kk * 16 +
                        (((lane >> 3) & 1) << 3));
#pragma unroll
      for (int m = 0; m < kMT; ++m) {
        uint32_t a[4];
        LdMatrixX4(a, qs + (m * 16 + (lane & 15)) * kTcStride + kk * 16 + (lane >> 4) * 8);
        Mma16816(acc[m][0], a, b[0], b[1]);
        Mma16816(acc[m][1], a, b[2], b[3]);
      }
    }
    const int g = lane >> 2, q4 = lane & 3;
#pragma unroll
    for (int n = 0; n < 2; ++n) {
      float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
      for (int m = 0; m < kMT; ++m) {
        const float w_lo = ws[m * 16 + g], w_hi = ws[m * 16 + g + 8];
        s0 += w_lo * fmaxf(acc[m][n][0], 0.0f) + w_hi * fmaxf(acc[m][n][2], 0.0f);
        s1 += w_lo * fmaxf(acc[m][n][1], 0.0f) + w_hi * fmaxf(acc[m][n][3], 0.0f);
      }
#pragma unroll
      for (int o = 4; o < 32; o <<= 1) {
        s0 += __shfl_xor_sync(0xffffffffu, s0, o);
        s1 += __shfl_xor_sync(0xffffffffu, s1, o);
      }
      if (g == 0) {
        const int e = e0 + warp * 16 + n * 8 + 2 * q4;
        if (e < nvis) out[e] = s0 * p.softmax_scale;
        if (e + 1 < nvis) out[e + 1] = s1 * p.softmax_scale;
      }
    }
  }
}

__device__ __forceinline__ uint64_t Compose(uint32_t key, int id) {
  return (uint64_t{key} << 32) | (0xffffffffu - static_cast<uint32_t>(id));
}

__global__ void __launch_bounds__(kTopkThreads)
    TopKKernel(IndexerTopKParams p, const float* scores) {
  using Sort = cub::BlockRadixSort<uint64_t, kTopkThreads, kSortItems>;
  using Scan = cub::BlockScan<int, kTopkThreads>;
  __shared__ union {
    typename Sort::TempStorage sort;
    typename Scan::TempStorage scan;
  } temp;
  __shared__ uint64_t sel[kIndexerMaxK];
  __shared__ int hist[256];
  __shared__ uint32_t s_prefix;
  __shared__ int s_remaining, s_count_gt;

  const int t = blockIdx.x;
  const int k = p.k;
  const int nvis = Visible(p.token_pos[t], p.rate, p.max_entries);
  const float* sc = scores + int64_t{t} * p.max_entries;
  int count;
  if (nvis <= k) {
    for (int e = threadIdx.x; e < nvis; e += kTopkThreads) sel[e] = Compose(OrderedKey(sc[e]), e);
    count = nvis;
  } else {
    // Radix select of the k-th largest key, 8 bits a pass from the top.
    uint32_t prefix = 0, mask = 0;
    int remaining = k;  // rank of the wanted key among keys matching prefix
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int i = threadIdx.x; i < 256; i += kTopkThreads) hist[i] = 0;
      __syncthreads();
      for (int e = threadIdx.x; e < nvis; e += kTopkThreads) {
        const uint32_t key = OrderedKey(sc[e]);
        if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255], 1);
      }
      __syncthreads();
      if (threadIdx.x < 32) {
        // Warp search from the top bin: lane l owns bins 255-8l .. 248-8l.
        const int lane = threadIdx.x;
        int mine = 0;
#pragma unroll
        for (int i = 0; i < 8; ++i) mine += hist[255 - 8 * lane - i];
        int incl = mine;  // bins above and including this lane's, from the top
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
          const int v = __shfl_up_sync(0xffffffffu, incl, o);
          if (lane >= o) incl += v;
        }
        const unsigned crossing = __ballot_sync(0xffffffffu, incl >= remaining);
        const int owner = __ffs(crossing) - 1;  // first lane whose bins reach the rank
        if (lane == owner) {
          int above = incl - mine, d = 255 - 8 * lane;
          for (int i = 0; i < 7; ++i, --d) {
            if (above + hist[d] >= remaining) break;
            above += hist[d];
          }
          s_prefix = prefix | (uint32_t(d) << shift);
          s_remaining = remaining - above;
        }
      }
      __syncthreads();
      prefix = s_prefix;
      remaining = s_remaining;
      mask |= 255u << shift;
    }
    const uint32_t thr = prefix;
    const int n_gt = k - remaining;
    if (threadIdx.x == 0) s_count_gt = 0;
    __syncthreads();
    for (int e = threadIdx.x; e < nvis; e += kTopkThreads) {
      const uint32_t key = OrderedKey(sc[e]);
      if (key > thr) sel[atomicAdd(&s_count_gt, 1)] = Compose(key, e);
    }
    // The `remaining` ties at thr with the lowest ids, in id order.
    int taken = 0;
    for (int base = 0; base < nvis && taken < remaining; base += kTopkThreads) {
      const int e = base + threadIdx.x;
      const int flag = (e < nvis && OrderedKey(sc[e]) == thr) ? 1 : 0;
      int rank, total;
      Scan(temp.scan).ExclusiveSum(flag, rank, total);
      if (flag && taken + rank < remaining) sel[n_gt + taken + rank] = Compose(thr, e);
      taken += total;
      __syncthreads();
    }
    count = k;
  }
  __syncthreads();
  for (int i = count + threadIdx.x; i < kIndexerMaxK; i += kTopkThreads) sel[i] = 0;
  __syncthreads();
  uint64_t items[kSortItems];
#pragma unroll
  for (int i = 0; i < kSortItems; ++i) items[i] = sel[threadIdx.x * kSortItems + i];
  __syncthreads();
  Sort(temp.sort).SortDescending(items);
#pragma unroll
  for (int i = 0; i < kSortItems; ++i) sel[threadIdx.x * kSortItems + i] = items[i];
  __syncthreads();
  int32_t* out = p.selected + int64_t{t} * k;
  for (int i = threadIdx.x; i < k; i += kTopkThreads)
    out[i] = i < count ? static_cast<int32_t>(0xffffffffu - static_cast<uint32_t>(sel[i])) : -1;
}

// Blocks per token for the scorers: enough chunks for max_entries, capped at
// what fills the GPU a few times over (the blocks stride over the rest).
int ScoreBlocks(int max_entries, int per_block, int tokens) {
  const int chunks = (max_entries + per_block - 1) / per_block;
  const int cap = std::max(1, (8 * 132 + tokens - 1) / std::max(1, tokens));
  return std::max(1, std::min(chunks, cap));
}

}  // namespace

const char* Validate(const IndexerTopKParams& p) {
  if (!p.q || !p.weights || !p.keys.pool || !p.keys.table || !p.token_pos || !p.token_seq ||
      !p.seq_slot || !p.selected)
    return "indexer: null pointer";
  if (p.tokens < 0 || p.heads < 1 || p.rate < 1 || p.max_entries < 0) return "indexer: bad sizes";
  if (p.k < 1 || p.k > kIndexerMaxK) return "indexer: k must be in [1, 1024]";
  if (p.keys.width != p.head_dim || p.keys.page_size < 1) return "indexer: bad key pages";
  return nullptr;
}

bool IndexerUsesTensorCores(const IndexerTopKParams& p) {
  return p.head_dim == kTcC && (p.heads == 32 || p.heads == 64);
}

size_t IndexerTopKWorkspaceBytes(const IndexerTopKParams& p) {
  return sizeof(float) * size_t(p.tokens) * size_t(p.max_entries);
}

cudaError_t LaunchIndexerTopK(const IndexerTopKParams& p, void* workspace, cudaStream_t stream) {
  if (Validate(p)) return cudaErrorInvalidValue;
  if (p.tokens == 0) return cudaSuccess;
  float* scores = static_cast<float*>(workspace);
  if (p.max_entries > 0 && IndexerUsesTensorCores(p)) {
    const dim3 grid(ScoreBlocks(p.max_entries, kTcEntries, p.tokens), p.tokens);
    MG_DISPATCH_INDEX_TC_HEADS(p.heads, NH,
                               { TcScoreKernel<NH><<<grid, 128, 0, stream>>>(p, scores); });
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  } else if (p.max_entries > 0) {
    const dim3 grid(ScoreBlocks(p.max_entries, kScoreThreads, p.tokens), p.tokens);
    const size_t smem = sizeof(float) * p.heads * (p.head_dim + 1);
    MG_DISPATCH_INDEX_HEAD_DIM(p.head_dim, C, {
      if (smem > 48 * 1024) {
        cudaError_t e = EnsureDynamicSmem(reinterpret_cast<const void*>(ScoreKernel<C>),
                                          static_cast<int>(smem));
        if (e != cudaSuccess) return e;
      }
      ScoreKernel<C><<<grid, kScoreThreads, smem, stream>>>(p, scores);
    });
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  TopKKernel<<<p.tokens, kTopkThreads, 0, stream>>>(p, scores);
  return cudaGetLastError();
}

}  // namespace moegraph::cuda
