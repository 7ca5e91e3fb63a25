#include "kernels/cpu/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace moegraph::quant {

float E4M3ToFloat(uint8_t bits) {
  const bool neg = bits & 0x80;
  const int exp = (bits >> 3) & 0xF, mant = bits & 0x7;
  float v;
  if (exp == 0xF && mant == 0x7) {
    v = std::nanf("");
  } else if (exp == 0) {
    v = std::ldexp(static_cast<float>(mant), -9);  // subnormal: mant/8 * 2^-6
  } else {
    v = std::ldexp(1.0f + mant / 8.0f, exp - 7);
  }
  return neg ? -v : v;
}

uint8_t FloatToE4M3(float v) {
  if (std::isnan(v)) return 0x7F;
  const uint8_t sign = std::signbit(v) ? 0x80 : 0x00;
  const float a = std::fabs(v);
  if (a >= kE4M3Max) return sign | 0x7E;
  if (a < std::ldexp(1.0f, -6)) {
    // Subnormals step by 2^-9; q == 8 lands on the smallest normal's bits.
    const int q = static_cast<int>(std::nearbyint(std::ldexp(a, 9)));
    return sign | static_cast<uint8_t>(q);
  }
  int e2;
  std::frexp(a, &e2);
  int e = e2 - 1;                                                  // a in [2^e, 2^(e+1))
  int q = static_cast<int>(std::nearbyint(std::ldexp(a, 3 - e)));  // 8..16
  if (q == 16) {
    q = 8;
    ++e;
  }
  const int biased = e + 7;
  if (biased > 15 || (biased == 15 && q - 8 == 7)) return sign | 0x7E;
  return sign | static_cast<uint8_t>((biased << 3) | (q - 8));
}

float E8M0ToFloat(uint8_t bits) {
  if (bits == 0xFF) return std::nanf("");
  return std::ldexp(1.0f, static_cast<int>(bits) - 127);
}

namespace {
constexpr float kE2M1Values[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
}

float E2M1ToFloat(uint8_t code) {
  const float v = kE2M1Values[code & 0x7];
  return (code & 0x8) ? -v : v;
}

uint8_t FloatToE2M1(float v) {
  const uint8_t sign = std::signbit(v) ? 0x8 : 0x0;
  const float a = std::fabs(v);
  int best = 0;
  for (int c = 1; c < 8; ++c) {
    const float d = std::fabs(kE2M1Values[c] - a), db = std::fabs(kE2M1Values[best] - a);
    if (d < db || (d == db && (c & 1) == 0)) best = c;
  }
  return sign | static_cast<uint8_t>(best);
}

void DequantizeFp8(const uint8_t* data, const uint8_t* scales_e8m0, const float* scales_f32,
                   int64_t n, int64_t k, float* out) {
  const int64_t kb = (k + kFp8Block - 1) / kFp8Block;
  float lut[256];
  for (int b = 0; b < 256; ++b) lut[b] = E4M3ToFloat(static_cast<uint8_t>(b));
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      const int64_t s = (r / kFp8Block) * kb + c / kFp8Block;
      const float scale = scales_f32 ? scales_f32[s] : E8M0ToFloat(scales_e8m0[s]);
      out[r * k + c] = lut[data[r * k + c]] * scale;
    }
  }
}

void DequantizeFp4(const uint8_t* data, const uint8_t* scales_e8m0, int64_t n, int64_t k,
                   float* out) {
  const int64_t groups = k / kFp4Group;
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      const uint8_t byte = data[r * (k / 2) + c / 2];
      const uint8_t code = (c & 1) ? byte >> 4 : byte & 0xF;
      out[r * k + c] = E2M1ToFloat(code) * E8M0ToFloat(scales_e8m0[r * groups + c / kFp4Group]);
    }
  }
}

void QuantizeActivationRow(float* x, int64_t k, bool pow2_scales) {
  for (int64_t g = 0; g < k; g += kFp8Block) {
    const int64_t end = std::min(k, g + kFp8Block);
    float amax = 1e-4f;  // the reference's floor: an all-zero group keeps a finite scale
    for (int64_t i = g; i < end; ++i) amax = std::max(amax, std::fabs(x[i]));
    float s = amax / kE4M3Max;
    if (pow2_scales) s = std::ldexp(1.0f, static_cast<int>(std::ceil(std::log2(s))));
    for (int64_t i = g; i < end; ++i) x[i] = E4M3ToFloat(FloatToE4M3(x[i] / s)) * s;
  }
}

}  // namespace moegraph::quant
