// SplitMix64's output function: a 64-bit hash of a counter, the base of the
// project's counter-based streams (seeded sampling, random weights, the fake
// engine's logits). kernels/cuda/sampling.cu has the device copy, bit for bit.
#pragma once

#include <cstdint>

namespace moegraph {

inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace moegraph
