// Routed-expert kernels (see moe.h).
//
// Align: one block counts tokens per expert, lays the (token, k) pairs out
// grouped by expert and lists the row tiles of the grouped GEMMs. The GEMMs
// launch one block per (column tile, possible row tile); blocks past the
// device-side tile count exit at once, so launch sizes never depend on the
// routing and nothing waits for the host.
#include "kernels/cuda/moe.h"

#include <algorithm>
#include <cstdlib>
#include <type_traits>

#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/dispatch.h"
#include "kernels/cuda/gemv_chunk.cuh"
#include "kernels/cuda/launch_util.h"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/quant_tile.cuh"

namespace moegraph::cuda {
namespace {

constexpr int kAlignThreads = 1024;
constexpr int kBK = 64;              // depth per pipeline stage
constexpr int kStages = 3;           // 3 measured faster than 4 at decode sizes (H100)
constexpr int kQuantStages = 6;      // FP8/FP4: compressed B tiles are 2-4x smaller
constexpr int kRowStride = kBK + 8;  // bf16 per smem row (16 B pad)

size_t AlignUp(size_t v) { return (v + 255) & ~size_t{255}; }

// The small-batch path runs for quantized experts when they average at most
// this many rows (the pairs a step routes / experts): there every weight is
// read about once by either path, and building the values on the CUDA cores
// costs less than the tiled kernel's dequantizing serial K walk (H200, E32
// top 6, batch 1 / 8: FP4 81 / 271 us against 157 / 430, FP8 98 / 316
// against 202 / 582). bf16 experts lose on it (139 / 493 against 131 / 423
// us): the tiled kernel reads them with no conversion at all (NOTES.md).
// MOEGRAPH_MOE_GEMV=N sets the bound (0: never), for same-run comparisons.
int GemvMaxRowsPerExpert() {
  static const int most = [] {
    const char* v = std::getenv("MOEGRAPH_MOE_GEMV");
    return v ? std::clamp(std::atoi(v), 0, 64) : 2;
  }();
  return most;
}

// The small-batch path (GemvKernel): tiles of at most kGemvMaxRows rows of
// one expert, 16 outputs a block (gemv_chunk.cuh).
bool UseGemv(const MoeParams& p) {
  if (p.fmt == WeightFmt::kBf16) return false;
  const int c = GemvChunkElems(p.fmt);
  return p.dim % c == 0 && p.inter % c == 0 &&
         int64_t{p.tokens} * p.k <= int64_t{GemvMaxRowsPerExpert()} * p.experts;
}

int BlockM(const MoeParams& p) {
  // Top-k routing gives an expert at most one row a token, but a hash table
  // may name an expert twice: tiles are cut to the kernel's rows either way.
  if (UseGemv(p)) return GemvRowsBound(p.tokens);
  // Decode batches give a handful of rows per expert: small tiles waste less.
  const int pairs = p.tokens * p.k;
  return pairs <= 24 * p.experts ? 16 : 64;
}
// Every tile holds at least one pair, and every expert's last tile may be partial.
int MaxTiles(const MoeParams& p, int bm) {
  const int pairs = p.tokens * p.k;
  return std::max(1, std::min(pairs, (pairs + bm - 1) / bm + p.experts));
}

// Blocks splitting the depth K of a product with N outputs (quantized
// experts): enough that the row tiles a step is expected to have
// (min(pairs, experts) at decode) keep ~4 blocks on every SM, each block
// still walking >= 8 stages.
// MOEGRAPH_MOE_SPLIT_K=1 turns the split off (for same-run comparisons).
int MaxSplits() {
  static const int most = [] {
    const char* v = std::getenv("MOEGRAPH_MOE_SPLIT_K");
    return v ? std::clamp(std::atoi(v), 1, 8) : 8;
  }();
  return most;
}

int SplitK(const MoeParams& p, int N, int K, int bm) {
  if (UseGemv(p)) return 1;
  // bf16 experts measured slower split (H200, batch 1: 146 vs 137 us), FP4
  // faster (164 vs 202 us): the compressed tiles need more blocks in flight.
  if (p.fmt == WeightFmt::kBf16) return 1;
  const int pairs = p.tokens * p.k;
  const int est_tiles = std::max(std::min(pairs, p.experts), (pairs + bm - 1) / bm);
  const int blocks = std::max(1, (N + 63) / 64 * est_tiles);
  const int want = (4 * p.num_sms + blocks - 1) / blocks;
  const int most = std::max(1, (K + kBK - 1) / kBK / 8);
  return std::clamp(want, 1, std::min(most, MaxSplits()));
}
int SplitGated(const MoeParams& p) { return SplitK(p, p.inter, p.dim, BlockM(p)); }
int SplitDown(const MoeParams& p) { return SplitK(p, p.dim, p.inter, BlockM(p)); }

struct Workspace {
  int32_t* offsets;      // [experts + 1]
  int32_t* sorted_pair;  // [tokens * k] pair id (t * k + j) by expert
  int32_t* pair_pos;     // [tokens * k] row of each pair in sorted order, -1 if dropped
  int2* tiles;           // [max_tiles] (expert, first row)
  int32_t* num_tiles;    // [1]
  __nv_bfloat16* h;      // [tokens * k, inter]
  float* part;           // split gated product: [splits][tokens * k][2][inter] (w1 x, w3 x)
  float* y;              // [splits][tokens * k, dim], summed over splits by the combine
  int gated_splits, down_splits;
  size_t bytes;
};

Workspace Carve(const MoeParams& p, void* base) {
  const size_t pairs = size_t(p.tokens) * p.k;
  const int bm = BlockM(p);
  Workspace w{};
  char* b = static_cast<char*>(base);
  size_t off = 0;
  auto take = [&](size_t bytes) {
    char* r = b ? b + off : nullptr;
    off += AlignUp(bytes);
    return r;
  };
  w.offsets = reinterpret_cast<int32_t*>(take(4 * (p.experts + 1)));
  w.sorted_pair = reinterpret_cast<int32_t*>(take(4 * pairs));
  w.pair_pos = reinterpret_cast<int32_t*>(take(4 * pairs));
  w.tiles = reinterpret_cast<int2*>(take(8 * size_t(MaxTiles(p, bm))));
  w.num_tiles = reinterpret_cast<int32_t*>(take(4));
  w.gated_splits = SplitGated(p);
  w.down_splits = SplitDown(p);
  w.h = reinterpret_cast<__nv_bfloat16*>(take(2 * pairs * p.inter));
  w.part = w.gated_splits > 1
               ? reinterpret_cast<float*>(take(4 * w.gated_splits * pairs * 2 * p.inter))
               : nullptr;
  w.y = reinterpret_cast<float*>(take(4 * w.down_splits * pairs * p.dim));
  w.bytes = off;
  return w;
}

__global__ void __launch_bounds__(kAlignThreads) AlignKernel(MoeParams p, Workspace ws, int bm) {
  __shared__ int counts[kMoeMaxExperts];
  __shared__ int cursor[kMoeMaxExperts];
  const int pairs = p.tokens * p.k;
  for (int e = threadIdx.x; e < p.experts; e += kAlignThreads) counts[e] = 0;
  __syncthreads();
  for (int i = threadIdx.x; i < pairs; i += kAlignThreads) {
    const int e = p.idx[i];
    if (e >= 0 && e < p.experts) atomicAdd(&counts[e], 1);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int off = 0, nt = 0;
    for (int e = 0; e < p.experts; ++e) {
      ws.offsets[e] = off;
      cursor[e] = off;
      for (int r = 0; r < counts[e]; r += bm) ws.tiles[nt++] = make_int2(e, off + r);
      off += counts[e];
    }
    ws.offsets[p.experts] = off;
    *ws.num_tiles = nt;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < pairs; i += kAlignThreads) {
    const int e = p.idx[i];
    if (e >= 0 && e < p.experts) {
      const int slot = atomicAdd(&cursor[e], 1);
      ws.sorted_pair[slot] = i;
      ws.pair_pos[i] = slot;
    } else {
      ws.pair_pos[i] = -1;
    }
  }
}

__device__ __forceinline__ float Swiglu(float a, float b, float L) {
  if (L > 0.0f) {
    a = fminf(a, L);
    b = fminf(fmaxf(b, -L), L);
  }
  return a / (1.0f + expf(-a)) * b;
}

// Shared memory of one pipeline stage: the A tile, then NB B tiles (bf16, or
// compressed as stored for FP8/FP4 experts, dequantized per tile into NB bf16
// tiles after the stages; quant_tile.cuh).
template <int BM, bool GATED, int WARPS, WeightFmt F>
struct GemmSmem {
  static constexpr int kBN = 16 * WARPS;
  static constexpr int kNB = GATED ? 2 : 1;
  static constexpr bool kQuant = F != WeightFmt::kBf16;
  static constexpr int kABytes = BM * kRowStride * 2;
  static constexpr int kBTileBytes = kBN * kRowStride * 2;
  static constexpr int kBStageBytes = kQuant ? QuantTile<F, kBN, kBK>::kStageBytes : kBTileBytes;
  static constexpr int kStageBytes = kABytes + kNB * kBStageBytes;
  static constexpr size_t Bytes(int stages) {
    return size_t(stages) * kStageBytes + (F == WeightFmt::kFp8 ? kNB * kBTileBytes : 0);
  }
};

// C[rows, n0:n0+64] = A[rows, :K] B[e][n0:n0+64, :K]^T for one row tile of one
// expert, over the depth split blockIdx.z of `splits`. GATED: two B matrices
// (w1, w3) and the SwiGLU epilogue into ws.h (split: both partial products
// into ws.part, SwigluKernel finishes); otherwise B = w2 and the routing
// weight scales the fp32 result into ws.y's plane blockIdx.z.
template <int BM, bool GATED, int STAGES, int WARPS, WeightFmt F>
__global__ void __launch_bounds__(WARPS * 32)
    GroupedGemmKernel(MoeParams p, Workspace ws, int N, int K, int splits) {
  using Smem = GemmSmem<BM, GATED, WARPS, F>;
  using Tile = QuantTile<F == WeightFmt::kFp4 ? WeightFmt::kFp4 : WeightFmt::kFp8, 16 * WARPS, kBK>;
  constexpr int kMT = BM / 16;
  constexpr int kBN = Smem::kBN;
  constexpr int kGemmThreads = 32 * WARPS;
  constexpr int kNB = Smem::kNB;
  constexpr bool kQuant = Smem::kQuant;
  // FP4: B fragments straight from the compressed stage (QuantTile::Fragments).
  constexpr bool kDirect = F == WeightFmt::kFp4;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  auto stage_a = [&](int s) {
    return reinterpret_cast<__nv_bfloat16*>(smem_raw + s * Smem::kStageBytes);
  };
  auto stage_b = [&](int s, int b) {
    return smem_raw + s * Smem::kStageBytes + Smem::kABytes + b * Smem::kBStageBytes;
  };
  auto deq_b = [&](int b) {
    return reinterpret_cast<__nv_bfloat16*>(smem_raw + STAGES * Smem::kStageBytes +
                                            b * Smem::kBTileBytes);
  };
  __shared__ int row_src[BM];
  __shared__ uint32_t lut[kQuant ? 256 : 1];

  if (int(blockIdx.y) >= *ws.num_tiles) return;
  const int2 tile = ws.tiles[blockIdx.y];
  const int e = tile.x, row0 = tile.y;
  const int rows = min(BM, ws.offsets[e + 1] - row0);
  const int n0 = blockIdx.x * kBN;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  if constexpr (kQuant) Tile::template FillLut<kGemmThreads>(lut, tid);  // before the barrier below
  // Source row of each tile row: x[token] for w1/w3, h[row] for w2.
  for (int r = tid; r < BM; r += kGemmThreads) {
    int src = -1;
    if (r < rows) src = GATED ? ws.sorted_pair[row0 + r] / p.k : row0 + r;
    row_src[r] = src;
  }
  __syncthreads();
  const __nv_bfloat16* A = GATED ? p.x : ws.h;
  const QuantOperand Q0 = MatrixOf<F>(GATED ? p.w1 : p.w2, e, N, K);
  const QuantOperand Q1 = GATED ? MatrixOf<F>(p.w3, e, N, K) : Q0;

  auto load_stage = [&](int kt, int stage) {
    __nv_bfloat16* s = stage_a(stage);
    const int k0 = kt * kBK;
    for (int i = tid; i < BM * (kBK / 8); i += kGemmThreads) {
      const int r = i / (kBK / 8), ch = i % (kBK / 8);
      const int src = row_src[r];
      const bool ok = src >= 0 && k0 + ch * 8 < K;
      CpAsync16(s + r * kRowStride + ch * 8, ok ? A + int64_t{src} * K + k0 + ch * 8 : A, ok);
    }
#pragma unroll
    for (int b = 0; b < kNB; ++b) {
      if constexpr (kQuant) {
        Tile::template Issue<kGemmThreads>(stage_b(stage, b), b == 0 ? Q0 : Q1, N, K, K, N, n0, k0,
                                           tid);
      } else {
        const auto* B = static_cast<const __nv_bfloat16*>((b == 0 ? Q0 : Q1).data);
        auto* sb = reinterpret_cast<__nv_bfloat16*>(stage_b(stage, b));
        for (int i = tid; i < kBN * (kBK / 8); i += kGemmThreads) {
          const int r = i / (kBK / 8), ch = i % (kBK / 8);
          const bool ok = n0 + r < N && k0 + ch * 8 < K;
          CpAsync16(sb + r * kRowStride + ch * 8, ok ? B + int64_t{n0 + r} * K + k0 + ch * 8 : B,
                    ok);
        }
      }
    }
  };

  float acc[kNB][kMT][2][4];
#pragma unroll
  for (int b = 0; b < kNB; ++b)
#pragma unroll
    for (int m = 0; m < kMT; ++m)
#pragma unroll
      for (int n = 0; n < 2; ++n)
        acc[b][m][n][0] = acc[b][m][n][1] = acc[b][m][n][2] = acc[b][m][n][3] = 0.0f;

  // This block's share of the depth: k tiles [kt0, kt0 + ktiles).
  const int all_ktiles = (K + kBK - 1) / kBK;
  const int kt0 = int(blockIdx.z) * all_ktiles / splits;
  const int ktiles = (int(blockIdx.z) + 1) * all_ktiles / splits - kt0;
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < ktiles) load_stage(kt0 + s, s);
    CpAsyncCommit();
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    CpAsyncWait<STAGES - 2>();
    __syncthreads();
    const int next = kt + STAGES - 1;
    if (next < ktiles) load_stage(kt0 + next, next % STAGES);
    CpAsyncCommit();
    const __nv_bfloat16* s = stage_a(kt % STAGES);
    if constexpr (kQuant && !kDirect) {
      // The dequantized tiles were last read by tile kt-1, before the barrier above.
#pragma unroll
      for (int b = 0; b < kNB; ++b)
        Tile::template Dequant<kGemmThreads, kRowStride>(stage_b(kt % STAGES, b), deq_b(b), lut,
                                                         tid);
      __syncthreads();
    }
#pragma unroll
    for (int ks = 0; ks < kBK / 16; ++ks) {
      uint32_t a[kMT][4];
#pragma unroll
      for (int m = 0; m < kMT; ++m)
        LdMatrixX4(a[m], s + (m * 16 + (lane & 15)) * kRowStride + ks * 16 + (lane >> 4) * 8);
#pragma unroll
      for (int b = 0; b < kNB; ++b) {
        uint32_t bf[4];
        if constexpr (kDirect) {
          Tile::Fragments(stage_b(kt % STAGES, b), lut, warp * 16, ks, lane, bf);
        } else {
          const __nv_bfloat16* sb =
              kQuant ? deq_b(b) : reinterpret_cast<const __nv_bfloat16*>(stage_b(kt % STAGES, b));
          LdMatrixX4(bf, sb + (warp * 16 + ((lane >> 4) << 3) + (lane & 7)) * kRowStride + ks * 16 +
                             (((lane >> 3) & 1) << 3));
        }
#pragma unroll
        for (int m = 0; m < kMT; ++m) {
          Mma16816(acc[b][m][0], a[m], bf[0], bf[1]);
          Mma16816(acc[b][m][1], a[m], bf[2], bf[3]);
        }
      }
    }
  }
  CpAsyncWait<0>();

  const int g = lane >> 2, q4 = lane & 3;
  const float L = p.swiglu_limit;
#pragma unroll
  for (int m = 0; m < kMT; ++m)
#pragma unroll
    for (int n = 0; n < 2; ++n)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = m * 16 + g + (i >= 2 ? 8 : 0);
        const int col = n0 + warp * 16 + n * 8 + 2 * q4 + (i & 1);
        if (r >= rows || col >= N) continue;
        const int64_t row = row0 + r;
        if constexpr (GATED) {
          float a = acc[0][m][n][i], b = acc[kNB - 1][m][n][i];
          if (splits > 1) {
            float* dst = ws.part + ((int64_t{blockIdx.z} * p.tokens * p.k + row) * 2) * N + col;
            dst[0] = a;
            dst[N] = b;
            continue;
          }
          ws.h[row * N + col] = __float2bfloat16(Swiglu(a, b, L));
        } else {
          ws.y[(int64_t{blockIdx.z} * p.tokens * p.k + row) * N + col] =
              acc[0][m][n][i] * (p.w ? p.w[ws.sorted_pair[row]] : 1.0f);
        }
      }
}

// h = SwiGLU of the split gated products, summed over the splits in order.
// Rows past the step's routed pairs (device count) exit.
__global__ void SwigluKernel(MoeParams p, Workspace ws) {
  const int rows = ws.offsets[p.experts];
  const int64_t pairs = int64_t{p.tokens} * p.k;
  const int N = p.inter;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < int64_t{rows} * N;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t row = i / N, col = i % N;
    float a = 0.0f, b = 0.0f;
    for (int z = 0; z < ws.gated_splits; ++z) {
      const float* src = ws.part + ((z * pairs + row) * 2) * N + col;
      a += src[0];
      b += src[N];
    }
    ws.h[row * N + col] = __float2bfloat16(Swiglu(a, b, p.swiglu_limit));
  }
}

// Weight rows a thread of the small-batch path streams: w1 and w3 of one
// output (gated), or of w2 as many outputs as make the same bytes a chunk
// (FP4's chunks are half FP8's): 2 FP4 rows, 16 outputs apart, or 1 FP8 row.
// Fewer, fuller blocks: the down product fits the GPU in one wave at batch 1.
template <WeightFmt F, bool GATED>
constexpr int GemvRowsPerThread() {
  return GATED || F == WeightFmt::kFp4 ? 2 : 1;
}
template <WeightFmt F, bool GATED>
constexpr int GemvBlockOutputs() {
  return GATED ? kGemvOutputs : GemvRowsPerThread<F, GATED>() * kGemvOutputs;
}

// One tile of the small-batch path, R = its rows: the block's outputs of
// expert e's product over K (gemv_chunk.cuh's layout). GATED: w1 and w3
// together, the SwiGLU into ws.h; otherwise w2, weighted into ws.y.
template <WeightFmt F, bool GATED, int R>
__device__ __forceinline__ void GemvTile(const MoeParams& p, const Workspace& ws, int e, int row0,
                                         int N, int K) {
  constexpr int kNB = GemvRowsPerThread<F, GATED>();  // (w1, w3) at n, or w2 at n, n + 16
  using C = GemvChunk<F>;
  const int n = blockIdx.x * GemvBlockOutputs<F, GATED>() + GemvOutput();
  int nl[kNB];  // outputs past N load a real row; their sums are dropped
  QuantOperand Q[kNB];
#pragma unroll
  for (int b = 0; b < kNB; ++b) {
    nl[b] = min(GATED ? n : n + b * kGemvOutputs, N - 1);
    Q[b] = MatrixOf<F>(GATED ? (b == 0 ? p.w1 : p.w3) : p.w2, e, N, K);
  }
  const __nv_bfloat16* x[R];
#pragma unroll
  for (int r = 0; r < R; ++r)
    x[r] = GATED ? p.x + int64_t{ws.sorted_pair[row0 + r] / p.k} * K : ws.h + int64_t{row0 + r} * K;
  float acc[kNB][R];
  StreamChunks<F, kNB, R>(
      0, K / C::kElems, [&](int b, int c) { return C::Load(Q[b], nl[b], c, N, K); }, x, acc);
  float s[kNB * R];
  if (!SumSlices(reinterpret_cast<const float(&)[kNB * R]>(acc), s)) return;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t row = row0 + r;
    if constexpr (GATED) {
      if (n < N) ws.h[row * N + n] = __float2bfloat16(Swiglu(s[r], s[R + r], p.swiglu_limit));
    } else {
      const float w = p.w ? p.w[ws.sorted_pair[row]] : 1.0f;
#pragma unroll
      for (int b = 0; b < kNB; ++b) {
        const int o = n + b * kGemvOutputs;
        if (o < N) ws.y[row * N + o] = s[b * R + r] * w;
      }
    }
  }
}

// MAXR: the most rows a tile has (BlockM).
template <WeightFmt F, bool GATED, int MAXR>
__global__ void __launch_bounds__(kGemvThreads)
    GemvKernel(MoeParams p, Workspace ws, int N, int K) {
  if (int(blockIdx.y) >= *ws.num_tiles) return;
  const int2 tile = ws.tiles[blockIdx.y];
  const int rows = min(MAXR, ws.offsets[tile.x + 1] - tile.y);
  WithRows<MAXR>(
      rows, [&](auto r) { GemvTile<F, GATED, decltype(r)::value>(p, ws, tile.x, tile.y, N, K); });
}

template <WeightFmt F, int MAXR>
cudaError_t LaunchGemv(const MoeParams& p, const Workspace& ws, int max_tiles,
                       cudaStream_t stream) {
  constexpr int kGatedOut = GemvBlockOutputs<F, true>(), kDownOut = GemvBlockOutputs<F, false>();
  const dim3 gated((p.inter + kGatedOut - 1) / kGatedOut, max_tiles);
  GemvKernel<F, true, MAXR><<<gated, kGemvThreads, 0, stream>>>(p, ws, p.inter, p.dim);
  const cudaError_t r = cudaGetLastError();
  if (r != cudaSuccess) return r;
  const dim3 down((p.dim + kDownOut - 1) / kDownOut, max_tiles);
  GemvKernel<F, false, MAXR><<<down, kGemvThreads, 0, stream>>>(p, ws, p.dim, p.inter);
  return cudaGetLastError();
}

__global__ void CombineKernel(MoeParams p, Workspace ws) {
  const int t = blockIdx.x;
  const int64_t plane = int64_t{p.tokens} * p.k * p.dim;
  for (int c = threadIdx.x; c < p.dim; c += blockDim.x) {
    float s = 0.0f;
    for (int j = 0; j < p.k; ++j) {
      const int row = ws.pair_pos[t * p.k + j];
      if (row < 0) continue;
      for (int z = 0; z < ws.down_splits; ++z) s += ws.y[z * plane + int64_t{row} * p.dim + c];
    }
    p.out[int64_t{t} * p.dim + c] = __float2bfloat16(s);
  }
}

template <int BM, bool GATED, int STAGES, int WARPS, WeightFmt F>
cudaError_t LaunchGemm(const MoeParams& p, const Workspace& ws, int N, int K, int max_tiles,
                       int splits, cudaStream_t stream) {
  constexpr int kBN = 16 * WARPS;
  const size_t smem = GemmSmem<BM, GATED, WARPS, F>::Bytes(STAGES);
  cudaError_t e = EnsureDynamicSmem(
      reinterpret_cast<const void*>(GroupedGemmKernel<BM, GATED, STAGES, WARPS, F>),
      static_cast<int>(smem));
  if (e != cudaSuccess) return e;
  const dim3 grid((N + kBN - 1) / kBN, max_tiles, splits);
  GroupedGemmKernel<BM, GATED, STAGES, WARPS, F>
      <<<grid, WARPS * 32, smem, stream>>>(p, ws, N, K, splits);
  return cudaGetLastError();
}

}  // namespace

const char* Validate(const MoeParams& p) {
  if (!p.x || !p.idx || !p.w1.data || !p.w2.data || !p.w3.data) return "moe: null pointer";
  if (p.tokens < 0 || p.k < 1 || p.experts < 1 || p.dim < 1 || p.inter < 1) return "moe: bad sizes";
  if (p.experts > kMoeMaxExperts) return "moe: too many experts";
  if (p.dim % 8 != 0 || p.inter % 8 != 0) return "moe: dim and inter must be multiples of 8";
  for (const QuantOperand* q : {&p.w1, &p.w2, &p.w3}) {
    if (p.fmt == WeightFmt::kFp8 && !q->scale_f32) return "moe: fp8 experts need f32 block scales";
    if (p.fmt == WeightFmt::kFp4 && !q->scale_e8m0) return "moe: fp4 experts need E8M0 scales";
  }
  if (p.fmt == WeightFmt::kFp8 && (p.dim % 16 != 0 || p.inter % 16 != 0))
    return "moe: fp8 experts need dim and inter divisible by 16";
  if (p.fmt == WeightFmt::kFp4 && (p.dim % 32 != 0 || p.inter % 32 != 0))
    return "moe: fp4 experts need dim and inter divisible by 32";
  return nullptr;
}

size_t MoeWorkspaceBytes(const MoeParams& p) { return Carve(p, nullptr).bytes; }

namespace {

// Groups the pairs by expert and runs both grouped GEMMs: ws.y holds each
// routed pair's (weighted, when p.w) output, by expert, in split planes.
cudaError_t RunExperts(const MoeParams& p, const Workspace& ws, cudaStream_t stream) {
  const int bm = BlockM(p);
  const int max_tiles = MaxTiles(p, bm);
  AlignKernel<<<1, kAlignThreads, 0, stream>>>(p, ws, bm);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  // 4 warps (64 output columns) a block: 2-warp blocks were measured no
  // faster even at batch 1 (H200, 124 vs 125 us), so one width serves all.
  auto gemms = [&](auto fmt) -> cudaError_t {
    constexpr WeightFmt F = decltype(fmt)::value;
    // Compressed tiles are small: keep more of them in flight.
    constexpr int kS = F == WeightFmt::kBf16 ? kStages : kQuantStages;
    cudaError_t r = cudaSuccess;
    if constexpr (F != WeightFmt::kBf16) {
      if (UseGemv(p)) {
        switch (bm) {  // GemvRowsBound: 1, 2 or 4
          case 1:
            return LaunchGemv<F, 1>(p, ws, max_tiles, stream);
          case 2:
            return LaunchGemv<F, 2>(p, ws, max_tiles, stream);
          default:
            return LaunchGemv<F, kGemvMaxRows>(p, ws, max_tiles, stream);
        }
      }
    }
    MG_DISPATCH_MOE_BLOCK_M(bm, BM, {
      r = LaunchGemm<BM, true, kS, 4, F>(p, ws, p.inter, p.dim, max_tiles, ws.gated_splits, stream);
      if (r == cudaSuccess && ws.gated_splits > 1) {
        const int64_t n = int64_t{p.tokens} * p.k * p.inter;
        const int blocks = static_cast<int>(std::min<int64_t>((n + 255) / 256, 4 * p.num_sms));
        SwigluKernel<<<blocks, 256, 0, stream>>>(p, ws);
        r = cudaGetLastError();
      }
      if (r == cudaSuccess)
        r = LaunchGemm<BM, false, kS, 4, F>(p, ws, p.dim, p.inter, max_tiles, ws.down_splits,
                                            stream);
    });
    return r;
  };
  switch (p.fmt) {
    case WeightFmt::kBf16:
      return gemms(std::integral_constant<WeightFmt, WeightFmt::kBf16>{});
    case WeightFmt::kFp8:
      return gemms(std::integral_constant<WeightFmt, WeightFmt::kFp8>{});
    case WeightFmt::kFp4:
      return gemms(std::integral_constant<WeightFmt, WeightFmt::kFp4>{});
  }
  return cudaErrorInvalidValue;
}

// The local experts' choices of the dispatched rows: -1 for a row past its
// source's count or a choice held by another rank.
__global__ void LocalChoicesKernel(MoePairsParams p, int32_t* local) {
  const int64_t n = int64_t{p.moe.tokens} * p.moe.k;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t row = i / p.moe.k;
    const int s = static_cast<int>(row / p.capacity), j = static_cast<int>(row % p.capacity);
    const int e = p.experts[i] - p.first_expert;
    const bool live = s < p.sources && j < min(max(p.counts[s], 0), p.capacity);
    local[i] = live && e >= 0 && e < p.moe.experts ? e : -1;
  }
}

// One unweighted output row per routed pair, in the grouped order, straight
// into the caller's buffer (the combine send buffer), and where it goes.
__global__ void PairsOutKernel(MoePairsParams p, Workspace ws) {
  const int total = min(ws.offsets[p.moe.experts], p.pair_capacity);
  const int64_t plane = int64_t{p.moe.tokens} * p.moe.k * p.moe.dim;
  for (int row = blockIdx.x; row < total; row += gridDim.x) {
    for (int c = threadIdx.x; c < p.moe.dim; c += blockDim.x) {
      float s = 0.0f;
      for (int z = 0; z < ws.down_splits; ++z) s += ws.y[z * plane + int64_t{row} * p.moe.dim + c];
      p.out[int64_t{row} * p.moe.dim + c] = __float2bfloat16(s);
    }
    if (threadIdx.x == 0) p.pair_dst[row] = ws.sorted_pair[row];
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) *p.pair_count = total;
}

__global__ void WeightedSumKernel(MoeWeightedSumParams p) {
  __shared__ int order[kMoeMaxChoices];
  const int t = blockIdx.x;
  const int32_t* ids = p.idx + int64_t{t} * p.k;
  if (threadIdx.x == 0) {
    // Choices by expert id, ties in choice order (insertion sort: k is small).
    for (int i = 0; i < p.k; ++i) {
      int j = i;
      while (j > 0 && ids[order[j - 1]] > ids[i]) {
        order[j] = order[j - 1];
        --j;
      }
      order[j] = i;
    }
  }
  __syncthreads();
  for (int c = threadIdx.x; c < p.dim; c += blockDim.x) {
    float s = 0.0f;
    for (int r = 0; r < p.k; ++r) {
      const int i = order[r];
      s += __bfloat162float(p.y[(int64_t{t} * p.k + i) * p.dim + c]) * p.w[int64_t{t} * p.k + i];
    }
    p.out[int64_t{t} * p.dim + c] = __float2bfloat16(s);
  }
}

}  // namespace

cudaError_t LaunchMoe(const MoeParams& p, void* workspace, cudaStream_t stream) {
  if (Validate(p) || !p.w || !p.out) return cudaErrorInvalidValue;
  if (p.tokens == 0) return cudaSuccess;
  if (!workspace) return cudaErrorInvalidValue;
  const Workspace ws = Carve(p, workspace);
  cudaError_t e = RunExperts(p, ws, stream);
  if (e != cudaSuccess) return e;
  CombineKernel<<<p.tokens, 256, 0, stream>>>(p, ws);
  return cudaGetLastError();
}

const char* Validate(const MoePairsParams& p) {
  MoeParams moe = p.moe;
  moe.idx = p.experts;  // LaunchMoePairs points idx at its local choices
  if (const char* m = Validate(moe)) return m;
  if (!p.experts || !p.counts || !p.out || !p.pair_dst || !p.pair_count)
    return "moe pairs: null pointer";
  if (p.sources < 1 || p.capacity < 1 || int64_t{p.sources} * p.capacity != p.moe.tokens)
    return "moe pairs: rows must be sources x capacity";
  if (p.pair_capacity < 0) return "moe pairs: negative pair capacity";
  return nullptr;
}

size_t MoePairsWorkspaceBytes(const MoePairsParams& p) {
  return AlignUp(4 * size_t(p.moe.tokens) * p.moe.k) + MoeWorkspaceBytes(p.moe);
}

cudaError_t LaunchMoePairs(const MoePairsParams& p, void* workspace, cudaStream_t stream) {
  if (Validate(p)) return cudaErrorInvalidValue;
  if (!workspace) return cudaErrorInvalidValue;
  auto* local = static_cast<int32_t*>(workspace);
  MoePairsParams q = p;
  q.moe.idx = local;
  q.moe.w = nullptr;  // unweighted: the token's own rank weighs (MoeWeightedSum)
  const int64_t n = int64_t{p.moe.tokens} * p.moe.k;
  LocalChoicesKernel<<<static_cast<int>(std::min<int64_t>((n + 255) / 256, 1024)), 256, 0,
                       stream>>>(q, local);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  const Workspace ws =
      Carve(q.moe, static_cast<char*>(workspace) + AlignUp(4 * size_t(p.moe.tokens) * p.moe.k));
  e = RunExperts(q.moe, ws, stream);
  if (e != cudaSuccess) return e;
  const int blocks = std::max(1, std::min(p.pair_capacity, 4 * p.moe.num_sms));
  PairsOutKernel<<<blocks, 256, 0, stream>>>(q, ws);
  return cudaGetLastError();
}

const char* Validate(const MoeWeightedSumParams& p) {
  if (!p.y || !p.idx || !p.w || !p.out) return "moe weighted sum: null pointer";
  if (p.tokens < 0 || p.k < 1 || p.k > kMoeMaxChoices || p.dim < 1)
    return "moe weighted sum: bad sizes (k must be in [1, 64])";
  return nullptr;
}

cudaError_t LaunchMoeWeightedSum(const MoeWeightedSumParams& p, cudaStream_t stream) {
  if (Validate(p)) return cudaErrorInvalidValue;
  if (p.tokens == 0) return cudaSuccess;
  WeightedSumKernel<<<p.tokens, 256, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace moegraph::cuda
