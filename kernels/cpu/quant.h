// The released DeepSeek-V4 number formats, on the host: FP8 e4m3 values with
// E8M0 (or f32) scales per 128x128 block, FP4 e2m1 pairs with E8M0 scales per
// 32 along K, and the reference's activation quantization (e4m3 in 1x128
// groups) for emulating the GPU's W8A8/W4A8 arithmetic.
//
// E8M0 byte e means 2^(e-127): the bits are an exponent, never a value to
// convert (e = 255 is NaN). FP4: two codes per byte, element 2i in the low
// nibble (OCP MX, torch float4_e2m1fn_x2); code bit 3 is the sign, bits 0-2
// index {0, 0.5, 1, 1.5, 2, 3, 4, 6}.
#pragma once

#include <cstdint>
#include <vector>

namespace moegraph::quant {

constexpr int kFp8Block = 128;  // weight scale block (both axes) and activation group
constexpr int kFp4Group = 32;   // FP4 weight scale group along K
constexpr float kE4M3Max = 448.0f;
constexpr float kE2M1Max = 6.0f;

float E4M3ToFloat(uint8_t bits);
// Round-to-nearest-even, saturating to +-448 (the reference's .to(float8_e4m3fn)
// after clamping); NaN stays NaN.
uint8_t FloatToE4M3(float v);
float E8M0ToFloat(uint8_t bits);
float E2M1ToFloat(uint8_t code);  // low 4 bits
uint8_t FloatToE2M1(float v);     // nearest, ties to even code, saturating at 6

// One matrix [n, k] dequantized to f32 (row-major).
//   fp8:  data e4m3 [n, k]; scales [ceil(n/128), ceil(k/128)] as E8M0 bytes
//         (scales_f32 == nullptr) or f32 values.
//   fp4:  data [n, k/2] packed; scales E8M0 [n, k/32].
void DequantizeFp8(const uint8_t* data, const uint8_t* scales_e8m0, const float* scales_f32,
                   int64_t n, int64_t k, float* out);
void DequantizeFp4(const uint8_t* data, const uint8_t* scales_e8m0, int64_t n, int64_t k,
                   float* out);

// The reference's activation quantization of one row of k values, in place:
// per group of 128, s = amax / 448 (rounded up to a power of two when
// pow2_scales, as scale_fmt "ue8m0" asks), x = e4m3(x / s) * s.
void QuantizeActivationRow(float* x, int64_t k, bool pow2_scales);

}  // namespace moegraph::quant
