// One row's parameters of the device sampler (sampling.h), in the layout the
// engine stages them: plain C++, so the engine builds it without CUDA.
#pragma once

#include <cstdint>

namespace moegraph::cuda {

constexpr int kSampleMaxBanned = 4;

struct SampleRowParams {
  float temperature = 0.0f;  // 0 = greedy
  int32_t top_k = 0;         // 0 = off
  float top_p = 1.0f;        // 1 = off
  float min_p = 0.0f;        // 0 = off
  uint32_t seed_lo = 0, seed_hi = 0;
  uint32_t index_lo = 0, index_hi = 0;                  // the token's index in its request
  int32_t banned[kSampleMaxBanned] = {-1, -1, -1, -1};  // ids never chosen (-1 = none)
};
static_assert(sizeof(SampleRowParams) == 48);
constexpr int kSampleRowWords = sizeof(SampleRowParams) / 4;

}  // namespace moegraph::cuda
