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
  // Log-probabilities to report (the raw logits' log-softmax): -1 = none,
  // else the chosen token's and this many most likely (<= kSampleMaxTopLogprobs).
  int32_t logprobs = -1;
};
static_assert(sizeof(SampleRowParams) == 52);
constexpr int kSampleRowWords = sizeof(SampleRowParams) / 4;

// What the sampler writes per row besides the id when logprobs >= 0: one
// record of 32-bit words after the rows' ids (sampling.h).
constexpr int kSampleMaxTopLogprobs = 20;
struct SampleLogprobs {
  float chosen = 0.0f;  // logprob of the sampled id
  int32_t count = 0;    // top entries, most likely first (ties: lower id)
  int32_t ids[kSampleMaxTopLogprobs] = {};
  float values[kSampleMaxTopLogprobs] = {};
};
constexpr int kSampleLogprobWords = sizeof(SampleLogprobs) / 4;
// Words of the sampler's output for `rows` rows: ids, then the records.
constexpr int64_t SampleOutputWords(int64_t rows) { return rows * (1 + kSampleLogprobWords); }

}  // namespace moegraph::cuda
