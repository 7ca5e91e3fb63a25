#include "engine/sampling/device_row.h"

#include "absl/strings/str_cat.h"

namespace moegraph::sampling {

absl::StatusOr<cuda::SampleRowParams> DeviceRow(const SamplingParams& p, uint64_t index,
                                                std::span<const int32_t> banned) {
  if (banned.size() > static_cast<size_t>(cuda::kSampleMaxBanned)) {
    return absl::InvalidArgumentError(absl::StrCat(
        banned.size(), " banned ids; the device sampler takes ", cuda::kSampleMaxBanned));
  }
  if (p.top_logprobs > cuda::kSampleMaxTopLogprobs) {
    return absl::InvalidArgumentError(absl::StrCat(
        p.top_logprobs, " top logprobs; the device sampler reports ", cuda::kSampleMaxTopLogprobs));
  }
  cuda::SampleRowParams r;
  r.temperature = p.temperature;
  r.top_k = p.top_k;
  r.top_p = p.top_p;
  r.min_p = p.min_p;
  r.seed_lo = static_cast<uint32_t>(p.seed);
  r.seed_hi = static_cast<uint32_t>(p.seed >> 32);
  r.index_lo = static_cast<uint32_t>(index);
  r.index_hi = static_cast<uint32_t>(index >> 32);
  for (size_t b = 0; b < banned.size(); ++b) r.banned[b] = banned[b];
  r.logprobs = p.logprobs || p.top_logprobs > 0 ? p.top_logprobs : -1;
  return r;
}

}  // namespace moegraph::sampling
