// Quantized weight tiles for the tensor-core GEMMs (quant_gemm.cu, moe.cu):
// B tiles of BN rows x BK values are fetched from global memory into
// registers (so the loads fly while the previous tile is multiplied), then
// dequantized to bf16 into shared memory in the layout the bf16 path's
// cp.async gives. Exact for E8M0 scales: an e4m3 or e2m1 value times a power
// of two fits bf16's mantissa; f32 scales (-Base checkpoints) round once.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "kernels/cuda/quant_format.h"

namespace moegraph::cuda {

__device__ __forceinline__ float E8M0ToFloat(uint32_t e) {
  return e ? __uint_as_float(e << 23) : __uint_as_float(0x00400000u);  // 2^-127 is subnormal
}

// e2m1 code (4 bits) -> float: bits 1-2 exponent, bit 0 mantissa, bit 3 sign.
__device__ __forceinline__ float E2M1ToFloat(uint32_t c) {
  const uint32_t e = (c >> 1) & 3, m = c & 1;
  const float mag = e == 0 ? 0.5f * m : __uint_as_float(((e + 126) << 23) | (m << 22));
  return (c & 8) ? -mag : mag;
}

// One matrix of a quantized operand (weight.h's layouts).
struct QuantMatrixView {
  const uint8_t* data = nullptr;  // bf16 [N, K] | e4m3 [N, K] | packed [N, K/2]
  const float* scale_f32 = nullptr;  // fp8: [ceil(N/128), ceil(K/128)]
  const uint8_t* scale_e8m0 = nullptr;  // fp4: [N, K/32]
};

template <WeightFmt F>
struct QuantTile {
  static constexpr int kVals = F == WeightFmt::kFp4 ? 32 : 16;  // values per 16-byte load
};

// Per-thread registers for one BN x BK tile, fetched by Fetch and written to
// shared memory (row stride RS bf16) by Store.
template <WeightFmt F, int BN, int BK, int RS, int THREADS>
struct BTileRegs {
  static constexpr int kVals = QuantTile<F>::kVals;
  static constexpr int kChunksPerRow = BK / kVals;
  static constexpr int kPer = (BN * kChunksPerRow + THREADS - 1) / THREADS;
  uint4 raw[kPer];
  float scale[kPer];

  __device__ __forceinline__ void Fetch(const QuantMatrixView& m, int N, int K, int n0, int k0,
                                        int tid) {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int c = tid + i * THREADS;
      const int r = c / kChunksPerRow, ch = c % kChunksPerRow;
      const int n = n0 + r, k = k0 + ch * kVals;
      raw[i] = make_uint4(0, 0, 0, 0);
      scale[i] = 0.0f;
      if (r < BN && n < N && k < K) {
        if constexpr (F == WeightFmt::kFp8) {
          raw[i] = *reinterpret_cast<const uint4*>(m.data + int64_t{n} * K + k);
          scale[i] = m.scale_f32[(n / 128) * ((K + 127) / 128) + k / 128];
        } else {
          raw[i] = *reinterpret_cast<const uint4*>(m.data + int64_t{n} * (K / 2) + k / 2);
          scale[i] = E8M0ToFloat(m.scale_e8m0[int64_t{n} * (K / 32) + k / 32]);
        }
      }
    }
  }

  __device__ __forceinline__ void Store(__nv_bfloat16* sb, int tid) const {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int c = tid + i * THREADS;
      const int r = c / kChunksPerRow, ch = c % kChunksPerRow;
      if (r >= BN) continue;
      const uint32_t w[4] = {raw[i].x, raw[i].y, raw[i].z, raw[i].w};
      uint32_t out[kVals / 2];  // bf16 pairs
      const float s = scale[i];
      if constexpr (F == WeightFmt::kFp8) {
#pragma unroll
        for (int j = 0; j < 8; ++j) {  // 2 values per iteration
          const __nv_fp8x2_storage_t pair =
              static_cast<__nv_fp8x2_storage_t>((w[j / 2] >> (16 * (j % 2))) & 0xFFFF);
          const float2 f = __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(pair, __NV_E4M3)));
          const __nv_bfloat162 b = __floats2bfloat162_rn(f.x * s, f.y * s);
          out[j] = *reinterpret_cast<const uint32_t*>(&b);
        }
      } else {
#pragma unroll
        for (int j = 0; j < 16; ++j) {  // one byte = elements 2j (low), 2j+1 (high)
          const uint32_t byte = (w[j / 4] >> (8 * (j % 4))) & 0xFF;
          const __nv_bfloat162 b =
              __floats2bfloat162_rn(E2M1ToFloat(byte & 0xF) * s, E2M1ToFloat(byte >> 4) * s);
          out[j] = *reinterpret_cast<const uint32_t*>(&b);
        }
      }
      uint4* dst = reinterpret_cast<uint4*>(sb + r * RS + ch * kVals);
#pragma unroll
      for (int q = 0; q < kVals / 8; ++q)
        dst[q] = make_uint4(out[4 * q], out[4 * q + 1], out[4 * q + 2], out[4 * q + 3]);
    }
  }
};

}  // namespace moegraph::cuda
