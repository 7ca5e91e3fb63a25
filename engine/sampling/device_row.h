// The host's sampling parameters as one row of the device sampler
// (kernels/cuda/sample_row.h), for the engine's staging block.
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "engine/sampling/sampler.h"
#include "kernels/cuda/sample_row.h"

namespace moegraph::sampling {

// `index` is the sampled token's index in its request (the RNG counter);
// InvalidArgument when `banned` holds more ids than the device takes.
absl::StatusOr<cuda::SampleRowParams> DeviceRow(const SamplingParams& p, uint64_t index,
                                                std::span<const int32_t> banned);

// What the device sampler does, on the host, with the host's Sampler: one id
// per row of `logits` (f32 [rows, vocab]) from its staged row, into `out`
// laid out as the device writes it (the ids, then a cuda::SampleLogprobs per
// row, filled for rows that ask for logprobs; out holds
// cuda::SampleOutputWords(rows) words). The same draws as sampling each row
// with Sampler::Sample directly.
void SampleStagedRows(const float* logits, int64_t rows, int64_t vocab,
                      const cuda::SampleRowParams* params, int32_t* out, Sampler* sampler);

}  // namespace moegraph::sampling
