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

}  // namespace moegraph::sampling
