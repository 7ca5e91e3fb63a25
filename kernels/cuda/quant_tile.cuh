// Quantized weight tiles for the tensor-core GEMMs (quant_gemm.cu, moe.cu).
// A B tile of BN rows x BK values travels as stored (FP8 bytes or packed FP4
// plus its scales) by cp.async into a pipeline stage, several stages ahead,
// then is dequantized to bf16 in shared memory in the layout the bf16 path's
// tiles have, right before its products. Moving the compressed bytes keeps
// as many weight bytes in flight as the bf16 path with a quarter (FP4) or
// half (FP8) of the traffic. Exact for E8M0 scales: an e4m3 or e2m1 value
// times a power of two fits bf16; f32 scales (-Base checkpoints) round once.
//
// Scale layouts on the device (weight.h, engine/backend/cuda/cuda_quant_ops.cc):
//   FP8: f32 [ceil(N/128), ceil(K/128)]: one value per tile (BN, BK <= 128,
//        tiles aligned to 64).
//   FP4: E8M0 re-laid out at load as [ceil(K/64)][N_stored][2]: a tile's 64
//        rows x 2 groups of 32 are 128 contiguous bytes.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/quant_format.h"

namespace moegraph::cuda {

__device__ __forceinline__ void CpAsync4(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int bytes = valid ? 4 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes));
}

__device__ __forceinline__ float E8M0ToFloat(uint32_t e) {
  return e ? __uint_as_float(e << 23) : __uint_as_float(0x00400000u);  // 2^-127 is subnormal
}

// An E8M0 scale as a bf16 pair: the same exponent bits (2^-127 is a bf16 subnormal).
__device__ __forceinline__ __nv_bfloat162 E8M0ToBf16x2(uint32_t e) {
  const uint32_t bits = e ? (e << 7) : 0x0040u;
  const uint32_t pair = bits | (bits << 16);
  return *reinterpret_cast<const __nv_bfloat162*>(&pair);
}

// e2m1 code (4 bits) -> float: bits 1-2 exponent, bit 0 mantissa, bit 3 sign.
__device__ __forceinline__ float E2M1ToFloat(uint32_t c) {
  const uint32_t e = (c >> 1) & 3, m = c & 1;
  const float mag = e == 0 ? 0.5f * m : __uint_as_float(((e + 126) << 23) | (m << 22));
  return (c & 8) ? -mag : mag;
}

// Matrix e of a stacked operand of [N, K] matrices (FP4 scales: planes of
// N rows per matrix, ceil(K/64) planes).
template <WeightFmt F>
__device__ __forceinline__ QuantOperand MatrixOf(const QuantOperand& q, int e, int N, int K) {
  QuantOperand m = q;
  const auto* base = static_cast<const uint8_t*>(q.data);
  if constexpr (F == WeightFmt::kBf16) {
    m.data = base + int64_t{e} * N * K * 2;
  } else if constexpr (F == WeightFmt::kFp8) {
    m.data = base + int64_t{e} * N * K;
    m.scale_f32 = q.scale_f32 + int64_t{e} * ((N + 127) / 128) * ((K + 127) / 128);
  } else {
    m.data = base + int64_t{e} * N * (K / 2);
    m.scale_e8m0 = q.scale_e8m0 + int64_t{e} * N * 2 * ((K + 63) / 64);
  }
  return m;
}

template <WeightFmt F, int BN, int BK>
struct QuantTile {
  static_assert(BK == 64, "FP4 scale planes are 64 wide");
  static constexpr int kVals = F == WeightFmt::kFp4 ? 32 : 16;  // values per 16 raw bytes
  static constexpr int kRowBytes = F == WeightFmt::kFp4 ? BK / 2 : BK;
  static constexpr int kRawBytes = BN * kRowBytes;
  static constexpr int kScaleBytes = F == WeightFmt::kFp4 ? BN * 2 : 16;
  static constexpr int kStageBytes = kRawBytes + kScaleBytes;

  // cp.async of tile (n0, k0) of `m` ([N, K], values at k >= k_end read as
  // zero; `scale_rows` = rows of the FP4 scale planes) into stage `s`.
  template <int THREADS>
  __device__ static void Issue(uint8_t* s, const QuantOperand& m, int N, int K, int k_end,
                               int scale_rows, int n0, int k0, int tid) {
    const auto* data = static_cast<const uint8_t*>(m.data);
    const int64_t row_stride = F == WeightFmt::kFp4 ? K / 2 : K;
    constexpr int kChunksPerRow = kRowBytes / 16;
    for (int c = tid; c < BN * kChunksPerRow; c += THREADS) {
      const int r = c / kChunksPerRow, ch = c % kChunksPerRow;
      const int n = n0 + r, k = k0 + ch * kVals;
      const bool ok = n < N && k < k_end;
      CpAsync16(s + r * kRowBytes + ch * 16,
                ok ? data + n * row_stride + (F == WeightFmt::kFp4 ? k / 2 : k) : data, ok);
    }
    if constexpr (F == WeightFmt::kFp8) {
      if (tid == 0)
        CpAsync4(s + kRawBytes, m.scale_f32 + (n0 / 128) * ((K + 127) / 128) + k0 / 128, true);
    } else {
      const uint8_t* plane = m.scale_e8m0 + int64_t{k0 / 64} * scale_rows * 2;
      for (int c = tid; c < BN * 2 / 16; c += THREADS) {
        const bool ok = n0 + c * 8 < N;
        CpAsync16(s + kRawBytes + c * 16, ok ? plane + (n0 + c * 8) * 2 : plane, ok);
      }
    }
  }

  // FP4: a 256-entry table from one stored byte to its two values as a bf16
  // pair, filled once per block. Dequantizing is then one shared-memory
  // lookup and one bf16x2 multiply by the scale per byte instead of ~10 ALU
  // instructions a value; exact, as the scales are powers of two.
  template <int THREADS>
  __device__ static void FillLut(uint32_t* lut, int tid) {
    if constexpr (F == WeightFmt::kFp4) {
      for (int b = tid; b < 256; b += THREADS) {
        const __nv_bfloat162 v = __floats2bfloat162_rn(E2M1ToFloat(b & 0xF), E2M1ToFloat(b >> 4));
        lut[b] = *reinterpret_cast<const uint32_t*>(&v);
      }
    }
  }

  // FP4, without a dequantized tile: the B fragments of mma.m16n8k16 for the
  // 16 columns [c0, c0+16) of the stage and k step ks, read from the stored
  // bytes. Lane l's register for column c0 + 8j + l/4 holds elements
  // k = 16ks + 2(l%4) + {0, 1} (+8 for the second register): exactly one
  // stored byte each, so one lookup and one multiply give the register.
  __device__ static void Fragments(const uint8_t* s, const uint32_t* lut, int c0, int ks, int lane,
                                   uint32_t (&bf)[4]) {
    static_assert(F == WeightFmt::kFp4, "FP4 only");
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int r = c0 + 8 * j + (lane >> 2);
      const uint8_t* row = s + r * kRowBytes + ks * 8 + (lane & 3);
      const __nv_bfloat162 sc = E8M0ToBf16x2(s[kRawBytes + r * 2 + (ks >> 1)]);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const uint32_t v = lut[row[4 * h]];
        const __nv_bfloat162 prod = __hmul2(*reinterpret_cast<const __nv_bfloat162*>(&v), sc);
        bf[2 * j + h] = *reinterpret_cast<const uint32_t*>(&prod);
      }
    }
  }

  // Stage `s` -> bf16 tile `out` [BN][RS], through `lut` (FillLut).
  template <int THREADS, int RS>
  __device__ static void Dequant(const uint8_t* s, __nv_bfloat16* out, const uint32_t* lut,
                                 int tid) {
    constexpr int kChunksPerRow = kRowBytes / 16;
    for (int c = tid; c < BN * kChunksPerRow; c += THREADS) {
      const int r = c / kChunksPerRow, ch = c % kChunksPerRow;
      const uint4 raw = *reinterpret_cast<const uint4*>(s + r * kRowBytes + ch * 16);
      const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
      uint32_t o[kVals / 2];  // bf16 pairs
      __nv_bfloat162 sc;
      float fsc = 0.0f;
      if constexpr (F == WeightFmt::kFp8) {
        fsc = *reinterpret_cast<const float*>(s + kRawBytes);
      } else {
        sc = E8M0ToBf16x2(s[kRawBytes + r * 2 + ch]);
      }
#pragma unroll
      for (int j = 0; j < kVals / 2; ++j) {
        uint32_t v;
        if constexpr (F == WeightFmt::kFp4) {
          v = lut[(w[j / 4] >> (8 * (j % 4))) & 0xFF];  // byte j: elements 2j, 2j+1
          const __nv_bfloat162 prod = __hmul2(*reinterpret_cast<const __nv_bfloat162*>(&v), sc);
          o[j] = *reinterpret_cast<const uint32_t*>(&prod);
        } else {
          // FP8: the hardware's e4m3x2 -> f16x2 conversion beats two lookups (measured).
          const auto pair =
              static_cast<__nv_fp8x2_storage_t>((w[j / 2] >> (16 * (j % 2))) & 0xFFFF);
          const float2 f = __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(pair, __NV_E4M3)));
          const __nv_bfloat162 b = __floats2bfloat162_rn(f.x * fsc, f.y * fsc);
          o[j] = *reinterpret_cast<const uint32_t*>(&b);
        }
      }
      uint4* dst = reinterpret_cast<uint4*>(out + r * RS + ch * kVals);
#pragma unroll
      for (int q = 0; q < kVals / 8; ++q)
        dst[q] = make_uint4(o[4 * q], o[4 * q + 1], o[4 * q + 2], o[4 * q + 3]);
    }
  }
};

}  // namespace moegraph::cuda
