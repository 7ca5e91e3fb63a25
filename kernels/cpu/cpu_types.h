// Shared vocabulary of the fp32 CPU reference kernels: weight element types
// and their conversion to fp32 (bf16 values are used exactly as fp32).
#pragma once

#include <cstdint>
#include <cstring>

namespace moegraph::cpu {

// Storage type of a weight matrix or table that a kernel reads.
enum class WeightType : uint8_t { kF32, kBF16 };

inline float Bf16Bits(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// Element i of a weight array of the given type, as fp32.
inline float LoadWeight(const void* w, WeightType type, int64_t i) {
  if (type == WeightType::kBF16) return Bf16Bits(static_cast<const uint16_t*>(w)[i]);
  return static_cast<const float*>(w)[i];
}

}  // namespace moegraph::cpu
