#include "engine/sampling/device_row.h"

#include <algorithm>

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

void SampleStagedRows(const float* logits, int64_t rows, int64_t vocab,
                      const cuda::SampleRowParams* params, int32_t* out, Sampler* sampler) {
  auto* records = reinterpret_cast<cuda::SampleLogprobs*>(out + rows);
  SampleResult result;
  for (int64_t r = 0; r < rows; ++r) {
    const cuda::SampleRowParams& row = params[r];
    SamplingParams p;
    p.temperature = row.temperature;
    p.top_k = row.top_k;
    p.top_p = row.top_p;
    p.min_p = row.min_p;
    p.seed = uint64_t{row.seed_hi} << 32 | row.seed_lo;
    p.logprobs = row.logprobs >= 0;
    p.top_logprobs = std::max(row.logprobs, 0);
    int banned = 0;
    while (banned < cuda::kSampleMaxBanned && row.banned[banned] >= 0) ++banned;
    const uint64_t index = uint64_t{row.index_hi} << 32 | row.index_lo;
    sampler->Sample(std::span<const float>(logits + r * vocab, static_cast<size_t>(vocab)), p,
                    nullptr, std::span<const int32_t>(row.banned, banned), index, &result);
    out[r] = result.token_id;
    if (row.logprobs < 0) continue;
    cuda::SampleLogprobs& rec = records[r];
    rec.chosen = result.logprob;
    rec.count = static_cast<int32_t>(
        std::min<size_t>(result.top.size(), static_cast<size_t>(cuda::kSampleMaxTopLogprobs)));
    for (int j = 0; j < rec.count; ++j) {
      rec.ids[j] = result.top[j].token_id;
      rec.values[j] = result.top[j].logprob;
    }
  }
}

}  // namespace moegraph::sampling
