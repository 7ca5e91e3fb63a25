// Dense FP8/FP4 linear (see quant_gemm.h).
#include "kernels/cuda/quant_gemm.h"

#include <algorithm>
#include <cstdlib>

#include "kernels/cuda/gemv_chunk.cuh"
#include "kernels/cuda/launch_util.h"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/quant_tile.cuh"

namespace moegraph::cuda {
namespace {

constexpr int kBN = 64;  // 4 warps x 16 columns
constexpr int kBK = 64;
constexpr int kRS = kBK + 8;  // bf16 per smem row (16 B pad against bank conflicts)
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kStages = 4;  // compressed tiles in flight ahead of the products

int BlockRows(int rows) { return rows <= 16 ? 16 : 64; }

// Products of at most this many rows run on the CUDA cores (LinearGemvKernel):
// each weight is read once and used for 1-4 multiply-adds, which the
// dequantizing tiled kernel's serial K walk cannot keep up with (NOTES.md).
// MOEGRAPH_LINEAR_GEMV=N sets it (0: never, at most 4), for same-run comparisons.
int GemvMaxRows() {
  static const int most = [] {
    const char* v = std::getenv("MOEGRAPH_LINEAR_GEMV");
    return v ? std::clamp(std::atoi(v), 0, kGemvMaxRows) : kGemvMaxRows;
  }();
  return most;
}

struct Plan {
  bool gemv = false;
  int bm, splits, k_per_split;
};

Plan MakePlan(const QuantLinearParams& p) {
  Plan pl;
  if (p.rows <= GemvMaxRows() && p.k % GemvChunkElems(p.fmt) == 0) {
    // 16 outputs a block; split K until ~8 blocks an SM stream the weight,
    // each slice of a split keeping at least one chunk.
    pl.gemv = true;
    pl.bm = kGemvMaxRows;
    const int blocks = (p.n + kGemvOutputs - 1) / kGemvOutputs * p.groups;
    const int chunks = p.k / GemvChunkElems(p.fmt);
    pl.splits = std::clamp((8 * p.num_sms + blocks - 1) / blocks, 1,
                           std::max(1, std::min(chunks / kGemvSlices, 16)));
    pl.k_per_split = 0;  // splits cut the chunks evenly (LinearGemvTile)
    return pl;
  }
  pl.bm = BlockRows(p.rows);
  const int tiles = ((p.n + kBN - 1) / kBN) * ((p.rows + pl.bm - 1) / pl.bm) * p.groups;
  const int ktiles = (p.k + kBK - 1) / kBK;
  // Aim at four blocks per SM streaming the weight, each split at least 4 K tiles.
  int splits = std::max(1, (4 * p.num_sms + tiles - 1) / tiles);
  splits = std::min({splits, std::max(1, ktiles / 4), 16});
  const int per = (ktiles + splits - 1) / splits;
  pl.k_per_split = per * kBK;
  pl.splits = (ktiles + per - 1) / per;
  return pl;
}

// Group g's product as a plain one (QuantLinearParams::groups); its split
// partials go to columns [g n, (g + 1) n) of [splits][rows][groups n].
__device__ __forceinline__ QuantLinearParams GroupOf(QuantLinearParams p, int g, float** partial) {
  if (p.groups == 1) return p;
  const int64_t rows_before = int64_t{g} * p.n;
  p.x += int64_t{g} * p.k;
  if (p.fmt == WeightFmt::kFp8) {
    p.w.data = static_cast<const uint8_t*>(p.w.data) + rows_before * p.k;
    p.w.scale_f32 += (rows_before / 128) * ((p.k + 127) / 128);
  } else {
    p.w.data = static_cast<const uint8_t*>(p.w.data) + rows_before * (p.k / 2);
    p.w.scale_e8m0 += rows_before * 2;  // planes of scale_rows rows (quant_tile.cuh)
  }
  p.y = static_cast<char*>(p.y) + rows_before * (p.y_f32 ? 4 : 2);
  if (*partial) *partial += rows_before;
  return p;
}

template <int BM, WeightFmt F>
__global__ void __launch_bounds__(kThreads)
    QuantLinearKernel(QuantLinearParams params, int k_per_split, float* partial) {
  const int tiles = (params.rows + BM - 1) / BM;
  const QuantLinearParams p = GroupOf(params, blockIdx.y / tiles, &partial);
  const int pn = params.groups * params.n;  // row stride of the partials
  using Tile = QuantTile<F, kBN, kBK>;
  constexpr int kMT = BM / 16;
  constexpr int kABytes = BM * kRS * 2;
  constexpr int kStageBytes = kABytes + Tile::kStageBytes;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  // [kStages x (A tile, compressed B tile)] then the dequantized B tile.
  auto stage = [&](int s) { return smem_raw + s * kStageBytes; };
  __nv_bfloat16* bdeq = reinterpret_cast<__nv_bfloat16*>(smem_raw + kStages * kStageBytes);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int n0 = blockIdx.x * kBN, row0 = (blockIdx.y % tiles) * BM;
  const int kbeg = blockIdx.z * k_per_split, kend = min(p.k, kbeg + k_per_split);
  const int ktiles = (kend - kbeg + kBK - 1) / kBK;
  __shared__ uint32_t lut[256];
  Tile::template FillLut<kThreads>(lut, tid);  // read after the loop's first barrier

  auto issue = [&](int kt) {
    unsigned char* s = stage(kt % kStages);
    auto* sa = reinterpret_cast<__nv_bfloat16*>(s);
    const int k0 = kbeg + kt * kBK;
    for (int i = tid; i < BM * (kBK / 8); i += kThreads) {
      const int r = i / (kBK / 8), ch = i % (kBK / 8);
      const bool ok = row0 + r < p.rows && k0 + ch * 8 < kend;
      CpAsync16(sa + r * kRS + ch * 8, ok ? p.x + int64_t{row0 + r} * p.ldx + k0 + ch * 8 : p.x,
                ok);
    }
    Tile::template Issue<kThreads>(s + kABytes, p.w, p.n, p.k, kend, p.scale_rows, n0, k0, tid);
  };

  float acc[kMT][2][4];
#pragma unroll
  for (int i = 0; i < kMT; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.0f;

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < ktiles) issue(s);
    CpAsyncCommit();
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    CpAsyncWait<kStages - 2>();
    __syncthreads();  // tile kt landed; everyone is done with tile kt-1
    if (kt + kStages - 1 < ktiles) issue(kt + kStages - 1);
    CpAsyncCommit();
    const unsigned char* s = stage(kt % kStages);
    Tile::template Dequant<kThreads, kRS>(s + kABytes, bdeq, lut, tid);
    __syncthreads();
    const auto* sa = reinterpret_cast<const __nv_bfloat16*>(s);
#pragma unroll
    for (int ks = 0; ks < kBK / 16; ++ks) {
      uint32_t a[kMT][4];
#pragma unroll
      for (int i = 0; i < kMT; ++i)
        LdMatrixX4(a[i], sa + (i * 16 + (lane & 15)) * kRS + ks * 16 + (lane >> 4) * 8);
      uint32_t bf[4];
      LdMatrixX4(bf, bdeq + (warp * 16 + ((lane >> 4) << 3) + (lane & 7)) * kRS + ks * 16 +
                         (((lane >> 3) & 1) << 3));
#pragma unroll
      for (int i = 0; i < kMT; ++i) {
        Mma16816(acc[i][0], a[i], bf[0], bf[1]);
        Mma16816(acc[i][1], a[i], bf[2], bf[3]);
      }
    }
  }
  CpAsyncWait<0>();

  const int g = lane >> 2, q4 = lane & 3;
#pragma unroll
  for (int i = 0; i < kMT; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = row0 + i * 16 + g + (e >= 2 ? 8 : 0);
        const int col = n0 + warp * 16 + j * 8 + 2 * q4 + (e & 1);
        if (r >= p.rows || col >= p.n) continue;
        const float v = acc[i][j][e];
        const int64_t at = int64_t{r} * p.ldy + col;
        if (partial) {
          partial[(int64_t{blockIdx.z} * p.rows + r) * pn + col] = v;
        } else if (p.y_f32) {
          static_cast<float*>(p.y)[at] = v;
        } else {
          static_cast<__nv_bfloat16*>(p.y)[at] = __float2bfloat16(v);
        }
      }
}

template <int BM, WeightFmt F>
size_t SmemBytes() {
  return kStages * (BM * kRS * 2 + QuantTile<F, kBN, kBK>::kStageBytes) + kBN * kRS * 2;
}

__global__ void SumSplitsKernel(QuantLinearParams p, int splits, const float* partial) {
  const int64_t total = int64_t{p.rows} * p.n;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    float s = 0.0f;
    for (int z = 0; z < splits; ++z) s += partial[z * total + i];
    const int64_t at = (i / p.n) * p.ldy + i % p.n;
    if (p.y_f32) {
      static_cast<float*>(p.y)[at] = s;
    } else {
      static_cast<__nv_bfloat16*>(p.y)[at] = __float2bfloat16(s);
    }
  }
}

// y[rows, n0:n0+16] (or split blockIdx.z's partial sums) for R = rows <= 4,
// in gemv_chunk.cuh's layout.
template <WeightFmt F, int R>
__device__ __forceinline__ void LinearGemvTile(const QuantLinearParams& params, int splits,
                                               float* partial) {
  using C = GemvChunk<F>;
  const QuantLinearParams p = GroupOf(params, blockIdx.y, &partial);
  const int pn = params.groups * params.n;  // row stride of the partials
  const int n = blockIdx.x * kGemvOutputs + GemvOutput();
  const int nl = min(n, p.n - 1);  // outputs past n load a real row; their sums are dropped
  const __nv_bfloat16* x[R];
#pragma unroll
  for (int r = 0; r < R; ++r) x[r] = p.x + int64_t{r} * p.ldx;
  const int chunks = p.k / C::kElems, z = blockIdx.z;
  float acc[1][R];
  StreamChunks<F, 1, R>(
      z * chunks / splits, (z + 1) * chunks / splits,
      [&](int, int c) { return C::Load(p.w, nl, c, p.scale_rows, p.k); }, x, acc);
  float s[R];
  if (!SumSlices(acc[0], s) || n >= p.n) return;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (splits > 1) {
      partial[(int64_t{z} * p.rows + r) * pn + n] = s[r];
    } else if (p.y_f32) {
      static_cast<float*>(p.y)[int64_t{r} * p.ldy + n] = s[r];
    } else {
      static_cast<__nv_bfloat16*>(p.y)[int64_t{r} * p.ldy + n] = __float2bfloat16(s[r]);
    }
  }
}

template <WeightFmt F>
__global__ void __launch_bounds__(kGemvThreads)
    LinearGemvKernel(QuantLinearParams p, int splits, float* partial) {
  WithRows<kGemvMaxRows>(
      p.rows, [&](auto r) { LinearGemvTile<F, decltype(r)::value>(p, splits, partial); });
}

// One kernel for 1-4 rows: instantiating fewer rows for 1-row products (fewer
// registers, more blocks an SM) measured slower (H200, FP8 1024->32768 at one
// row: 18.8 against 15.8 us, 8192->4096: 22.2 against 20.6), unlike the
// experts' kernel (moe.cu).
template <WeightFmt F>
void LaunchLinearGemv(const QuantLinearParams& p, const Plan& pl, float* partial, cudaStream_t st) {
  const dim3 grid((p.n + kGemvOutputs - 1) / kGemvOutputs, p.groups, pl.splits);
  LinearGemvKernel<F><<<grid, kGemvThreads, 0, st>>>(p, pl.splits, partial);
}

template <int BM, WeightFmt F>
cudaError_t Launch(const QuantLinearParams& p, const Plan& pl, float* partial, cudaStream_t st) {
  const size_t smem = SmemBytes<BM, F>();
  cudaError_t e = EnsureDynamicSmem(reinterpret_cast<const void*>(QuantLinearKernel<BM, F>),
                                    static_cast<int>(smem));
  if (e != cudaSuccess) return e;
  const dim3 grid((p.n + kBN - 1) / kBN, (p.rows + BM - 1) / BM * p.groups, pl.splits);
  QuantLinearKernel<BM, F><<<grid, kThreads, smem, st>>>(p, pl.k_per_split, partial);
  return cudaGetLastError();
}

}  // namespace

const char* Validate(const QuantLinearParams& p) {
  if (!p.x || !p.w.data || !p.y) return "quant linear: null pointer";
  if (p.rows < 0 || p.n < 1 || p.k < 1) return "quant linear: bad sizes";
  if (p.groups < 1) return "quant linear: groups must be at least 1";
  const int64_t gk = int64_t{p.groups} * p.k, gn = int64_t{p.groups} * p.n;
  const int64_t ldx = p.ldx ? p.ldx : gk, ldy = p.ldy ? p.ldy : gn;
  if (ldx < gk || ldy < gn || ldx % 8 != 0) return "quant linear: bad row strides";
  if (p.groups > 1 && p.fmt == WeightFmt::kFp8 && p.n % 128 != 0)
    return "quant linear: fp8 groups need n divisible by 128 (whole scale blocks)";
  if (p.fmt == WeightFmt::kFp8) {
    if (!p.w.scale_f32) return "quant linear: fp8 needs f32 block scales";
    if (p.k % 16 != 0) return "quant linear: fp8 needs K divisible by 16";
    if (p.ldx % 8 != 0) return "quant linear: x rows must start 16-byte aligned";
  } else if (p.fmt == WeightFmt::kFp4) {
    if (!p.w.scale_e8m0) return "quant linear: fp4 needs E8M0 scales";
    if (p.k % 32 != 0) return "quant linear: fp4 needs K divisible by 32";
  } else {
    return "quant linear: weight must be fp8 or fp4";
  }
  if (p.k % 8 != 0) return "quant linear: K must be a multiple of 8";
  if (p.fmt == WeightFmt::kFp4 && p.n % 8 != 0) return "quant linear: fp4 needs N divisible by 8";
  return nullptr;
}

size_t QuantLinearWorkspaceBytes(const QuantLinearParams& p) {
  const Plan pl = MakePlan(p);
  return pl.splits > 1 ? sizeof(float) * size_t(pl.splits) * p.rows * p.groups * p.n : 0;
}

cudaError_t LaunchQuantLinear(const QuantLinearParams& params, void* workspace,
                              cudaStream_t stream) {
  QuantLinearParams p = params;
  if (p.ldx == 0) p.ldx = p.groups * p.k;
  if (p.ldy == 0) p.ldy = p.groups * p.n;
  if (p.scale_rows == 0) p.scale_rows = p.groups * p.n;
  if (Validate(p)) return cudaErrorInvalidValue;
  if (p.rows == 0) return cudaSuccess;
  const Plan pl = MakePlan(p);
  float* partial = pl.splits > 1 ? static_cast<float*>(workspace) : nullptr;
  if (pl.splits > 1 && !partial) return cudaErrorInvalidValue;
  cudaError_t e;
  const bool fp8 = p.fmt == WeightFmt::kFp8;
  if (pl.gemv) {
    if (fp8) {
      LaunchLinearGemv<WeightFmt::kFp8>(p, pl, partial, stream);
    } else {
      LaunchLinearGemv<WeightFmt::kFp4>(p, pl, partial, stream);
    }
    e = cudaGetLastError();
  } else if (pl.bm == 16) {
    e = fp8 ? Launch<16, WeightFmt::kFp8>(p, pl, partial, stream)
            : Launch<16, WeightFmt::kFp4>(p, pl, partial, stream);
  } else {
    e = fp8 ? Launch<64, WeightFmt::kFp8>(p, pl, partial, stream)
            : Launch<64, WeightFmt::kFp4>(p, pl, partial, stream);
  }
  if (e != cudaSuccess || !partial) return e;
  QuantLinearParams sum = p;  // the groups' columns side by side: one [rows, groups n] sum
  sum.n = p.groups * p.n;
  sum.groups = 1;
  const int64_t total = int64_t{sum.rows} * sum.n;
  const int blocks = static_cast<int>(std::min<int64_t>((total + 255) / 256, 4 * p.num_sms));
  SumSplitsKernel<<<blocks, 256, 0, stream>>>(sum, pl.splits, partial);
  return cudaGetLastError();
}

}  // namespace moegraph::cuda
