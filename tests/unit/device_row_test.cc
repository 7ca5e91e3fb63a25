// The host's sampling parameters as the device sampler's row
// (engine/sampling/device_row.h): every field carried, logprob requests
// encoded, what the device cannot do refused.
#include <catch2/catch.hpp>

#include <string>

#include "engine/sampling/device_row.h"

namespace moegraph::sampling {
namespace {

TEST_CASE("device row: fields, logprob requests and limits", "[sampler]") {
  SamplingParams p;
  p.temperature = 0.7f;
  p.top_k = 40;
  p.top_p = 0.9f;
  p.min_p = 0.05f;
  p.seed = 0x123456789abcdef0ull;
  const int32_t banned[] = {1, 2};
  absl::StatusOr<cuda::SampleRowParams> r = DeviceRow(p, 0x100000002ull, banned);
  REQUIRE(r.ok());
  CHECK(r->temperature == 0.7f);
  CHECK(r->top_k == 40);
  CHECK(r->top_p == 0.9f);
  CHECK(r->min_p == 0.05f);
  CHECK(r->seed_lo == 0x9abcdef0u);
  CHECK(r->seed_hi == 0x12345678u);
  CHECK(r->index_lo == 2u);
  CHECK(r->index_hi == 1u);
  CHECK(r->banned[0] == 1);
  CHECK(r->banned[1] == 2);
  CHECK(r->banned[2] == -1);
  CHECK(r->logprobs == -1);  // none asked

  p.logprobs = true;
  CHECK(DeviceRow(p, 0, {})->logprobs == 0);  // the chosen token's only
  p.top_logprobs = cuda::kSampleMaxTopLogprobs;
  CHECK(DeviceRow(p, 0, {})->logprobs == cuda::kSampleMaxTopLogprobs);
  p.logprobs = false;  // top logprobs alone also report the chosen one
  CHECK(DeviceRow(p, 0, {})->logprobs == cuda::kSampleMaxTopLogprobs);

  p.top_logprobs = cuda::kSampleMaxTopLogprobs + 1;
  absl::StatusOr<cuda::SampleRowParams> bad = DeviceRow(p, 0, {});
  REQUIRE_FALSE(bad.ok());
  CHECK(std::string(bad.status().message()) == "21 top logprobs; the device sampler reports 20");
  p.top_logprobs = 0;
  const int32_t five[] = {1, 2, 3, 4, 5};
  CHECK_FALSE(DeviceRow(p, 0, five).ok());
}

}  // namespace
}  // namespace moegraph::sampling
