// Small-batch products on the CUDA cores: one thread's share of a weight row
// (a "chunk" of consecutive values, read as stored: FP8 e4m3 or packed FP4
// e2m1 with its scales) dotted in fp32 with a few activation rows. bf16
// weights are not read here: the tiled kernels were faster for them (NOTES.md).
//
// Why not the tensor cores: with 1-4 rows a product reads every weight once
// and does 1-4 multiply-adds with it, so it is bound by the bytes if each
// weight costs only a few instructions. The tiled mma kernels walk K in
// serial stages per block and idle at such sizes (kernels/cuda/NOTES.md);
// here each thread streams its chunks with 16-byte loads and no barriers.
//
// FP4 values are built as fp16 bit patterns with three integer operations a
// pair (magnitude bits into the fp16 exponent/mantissa, sign into bit 15):
// that fp16 is the e2m1 value times 2^-14 (e2m1's subnormal 0.5 lands on
// fp16's subnormal 2^-15), which the group's scale undoes. Exact.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>
#include <cstdlib>
#include <type_traits>

#include "kernels/cuda/quant_format.h"
#include "kernels/cuda/quant_tile.cuh"

namespace moegraph::cuda {

// Weights are read once: keep them out of L1, which holds the activations.
__device__ __forceinline__ uint4 LoadStream16(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

template <WeightFmt F>
struct GemvChunk;  // FP8 and FP4

template <>
struct GemvChunk<WeightFmt::kFp8> {
  static constexpr int kElems = 64, kGroup = 64;  // 64 bytes, inside one 128x128 scale block
  struct Raw {
    uint32_t q[16];
    float scale;
  };
  __device__ static Raw Load(const QuantOperand& m, int n, int c, int /*N*/, int K) {
    const auto* src = static_cast<const uint8_t*>(m.data) + int64_t{n} * K + c * kElems;
    Raw r;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint4 v = LoadStream16(src + 16 * i);
      r.q[4 * i] = v.x, r.q[4 * i + 1] = v.y, r.q[4 * i + 2] = v.z, r.q[4 * i + 3] = v.w;
    }
    r.scale = __ldg(m.scale_f32 + (n / 128) * ((K + 127) / 128) + c * kElems / 128);
    return r;
  }
  __device__ static void Values8(const Raw& r, int g, float (&v)[8]) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const auto pair = static_cast<__nv_fp8x2_storage_t>((r.q[2 * g + i / 2] >> (16 * (i % 2))));
      const float2 f = __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(pair, __NV_E4M3)));
      v[2 * i] = f.x;
      v[2 * i + 1] = f.y;
    }
  }
  __device__ static float GroupScale(const Raw& r, int) { return r.scale; }
};

template <>
struct GemvChunk<WeightFmt::kFp4> {
  static constexpr int kElems = 64, kGroup = 32;  // 32 bytes + two E8M0 scales
  struct Raw {
    uint32_t q[8];
    uint32_t scales;  // group 2c in the low byte, 2c + 1 in the next
  };
  // Scales as re-laid out at load: [ceil(K/64)][N][2] (quant_tile.cuh), so the
  // chunk's two are adjacent, and 16 threads on consecutive rows read 32 bytes.
  __device__ static Raw Load(const QuantOperand& m, int n, int c, int N, int K) {
    const auto* src = static_cast<const uint8_t*>(m.data) + int64_t{n} * (K / 2) + c * 32;
    Raw r;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const uint4 v = LoadStream16(src + 16 * i);
      r.q[4 * i] = v.x, r.q[4 * i + 1] = v.y, r.q[4 * i + 2] = v.z, r.q[4 * i + 3] = v.w;
    }
    r.scales = __ldg(reinterpret_cast<const uint16_t*>(m.scale_e8m0 + (int64_t{c} * N + n) * 2));
    return r;
  }
  template <int J>
  __device__ static uint32_t Pair(uint32_t w) {  // nibbles J and J + 4 as fp16 x 2^-14
    const uint32_t mag = J < 3 ? w << (9 - 4 * J) : w >> 3;
    const uint32_t sign = w << (12 - 4 * J);
    return (mag & 0x0E000E00u) | (sign & 0x80008000u);
  }
  __device__ static void Values8(const Raw& r, int g, float (&v)[8]) {
    const uint32_t w = r.q[g];  // values 8g .. 8g + 7, value 2i in byte i's low nibble
    const uint32_t h[4] = {Pair<0>(w), Pair<1>(w), Pair<2>(w), Pair<3>(w)};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&h[j]));
      v[j] = f.x;
      v[j + 4] = f.y;
    }
  }
  __device__ static float GroupScale(const Raw& r, int s) {
    return E8M0ToFloat((r.scales >> (8 * s)) & 0xFF) * 16384.0f;  // undoes Pair's 2^-14
  }
};

// Values a chunk holds, for the host's shape checks (K a multiple of it).
inline int GemvChunkElems(WeightFmt f) {
  return f == WeightFmt::kFp4 ? GemvChunk<WeightFmt::kFp4>::kElems
                              : GemvChunk<WeightFmt::kFp8>::kElems;
}

// acc[b][r] += row chunk w[b] . x[r][k0 : k0 + kElems], fp32, each scale
// group summed first and then scaled.
template <WeightFmt F, int NB, int R>
__device__ __forceinline__ void DotChunk(const typename GemvChunk<F>::Raw (&w)[NB],
                                         const __nv_bfloat16* const (&x)[R], int k0,
                                         float (&acc)[NB][R]) {
  using C = GemvChunk<F>;
  constexpr int kG8 = C::kGroup / 8;
#pragma unroll
  for (int sg = 0; sg < C::kElems / C::kGroup; ++sg) {
    float sub[NB][R];
#pragma unroll
    for (int b = 0; b < NB; ++b)
#pragma unroll
      for (int r = 0; r < R; ++r) sub[b][r] = 0.0f;
#pragma unroll
    for (int g = 0; g < kG8; ++g) {
      const int g8 = sg * kG8 + g;
      float xv[R][8];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const uint4 u = __ldg(reinterpret_cast<const uint4*>(x[r] + k0 + g8 * 8));
        const uint32_t q[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          xv[r][2 * i] = __uint_as_float(q[i] << 16);
          xv[r][2 * i + 1] = __uint_as_float(q[i] & 0xFFFF0000u);
        }
      }
#pragma unroll
      for (int b = 0; b < NB; ++b) {
        float v[8];
        C::Values8(w[b], g8, v);
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
          for (int i = 0; i < 8; ++i) sub[b][r] = fmaf(v[i], xv[r][i], sub[b][r]);
      }
    }
#pragma unroll
    for (int b = 0; b < NB; ++b) {
      const float s = C::GroupScale(w[b], sg);
#pragma unroll
      for (int r = 0; r < R; ++r) acc[b][r] = fmaf(sub[b][r], s, acc[b][r]);
    }
  }
}

// The block layout of both small-batch kernels (moe.cu, quant_gemm.cu):
// 128 threads own 16 consecutive outputs; lane l of warp w owns output
// l % 16 and K-slice 2w + l / 16 of 8, i.e. chunks slice, slice + 8, ...
constexpr int kGemvThreads = 128;
constexpr int kGemvOutputs = 16;
constexpr int kGemvMaxRows = 4;  // activation rows a block takes
constexpr int kGemvSlices = 2 * kGemvThreads / 32;
__device__ __forceinline__ int GemvOutput() { return threadIdx.x & 15; }
__device__ __forceinline__ int GemvSlice() {
  return 2 * (threadIdx.x >> 5) + ((threadIdx.x >> 4) & 1);
}

// fn(std::integral_constant<int, R>{}) for R = rows, 1 <= rows <= kMax (the
// block's rows are uniform, so is the branch). A kernel's registers are those
// of its largest R, so launches whose tiles cannot exceed fewer rows
// instantiate a smaller kMax (GemvRowsBound).
template <int kMax, class Fn>
__device__ __forceinline__ void WithRows(int rows, const Fn& fn) {
  static_assert(kMax >= 1 && kMax <= kGemvMaxRows);
  if constexpr (kMax == 1) {
    fn(std::integral_constant<int, 1>{});
  } else {
    if (rows >= kMax) {
      fn(std::integral_constant<int, kMax>{});
    } else {
      WithRows<kMax - 1>(rows, fn);
    }
  }
}

// The kMax to instantiate for tiles of at most `rows` rows: 1, 2 or 4.
// MOEGRAPH_GEMV_ONE_KERNEL=1 always takes 4 (one kernel for every tile, for
// same-run comparisons).
inline int GemvRowsBound(int rows) {
  static const bool one = [] {
    const char* v = std::getenv("MOEGRAPH_GEMV_ONE_KERNEL");
    return v && std::atoi(v) != 0;
  }();
  if (one || rows > 2) return kGemvMaxRows;
  return rows < 1 ? 1 : rows;
}

// acc[b][r] += this thread's chunks c in [c_begin, c_end) of its slice, of
// NB weight rows (load(b, c) -> GemvChunk<F>::Raw) against R activation
// rows. The next chunk's loads are in flight while the current one's
// products run.
template <WeightFmt F, int NB, int R, class LoadFn>
__device__ __forceinline__ void StreamChunks(int c_begin, int c_end, const LoadFn& load,
                                             const __nv_bfloat16* const (&x)[R],
                                             float (&acc)[NB][R]) {
  using C = GemvChunk<F>;
#pragma unroll
  for (int b = 0; b < NB; ++b)
#pragma unroll
    for (int r = 0; r < R; ++r) acc[b][r] = 0.0f;
  int c = c_begin + GemvSlice();
  typename C::Raw w[NB], next[NB];
  if (c < c_end) {
#pragma unroll
    for (int b = 0; b < NB; ++b) w[b] = load(b, c);
  }
  for (; c < c_end; c += kGemvSlices) {
    const bool more = c + kGemvSlices < c_end;
    if (more) {
#pragma unroll
      for (int b = 0; b < NB; ++b) next[b] = load(b, c + kGemvSlices);
    }
    DotChunk<F, NB, R>(w, x, c * C::kElems, acc);
    if (more) {
#pragma unroll
      for (int b = 0; b < NB; ++b) w[b] = next[b];
    }
  }
}

// The 8 slices' sums of each value, added in a fixed order, into out of
// the threads of warp 0 with lane < 16 (returns true there). Every thread
// of the block must call it.
template <int V>
__device__ __forceinline__ bool SumSlices(const float (&v)[V], float (&out)[V]) {
  __shared__ float red[kGemvThreads / 32][kGemvOutputs][V];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int i = 0; i < V; ++i) {
    const float s = v[i] + __shfl_xor_sync(0xFFFFFFFFu, v[i], 16);
    if (lane < 16) red[warp][lane][i] = s;
  }
  __syncthreads();
  if (warp != 0 || lane >= 16) return false;
#pragma unroll
  for (int i = 0; i < V; ++i) {
    out[i] = 0.0f;
#pragma unroll
    for (int q = 0; q < kGemvThreads / 32; ++q) out[i] += red[q][lane][i];
  }
  return true;
}

}  // namespace moegraph::cuda
