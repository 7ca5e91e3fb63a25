// engine/sampling/sampler: greedy, seeded determinism, truncation masks on
// hand-made logits, penalties and logprobs.
#include <catch2/catch.hpp>

#include <cmath>
#include <set>
#include <vector>

#include "engine/sampling/sampler.h"

namespace moegraph::sampling {
namespace {

std::set<int32_t> Support(const std::vector<float>& logits, const SamplingParams& base, int draws) {
  Sampler sampler;
  std::set<int32_t> seen;
  for (int i = 0; i < draws; ++i) {
    SampleResult r;
    sampler.Sample(logits, base, nullptr, {}, static_cast<uint64_t>(i), &r);
    seen.insert(r.token_id);
  }
  return seen;
}

TEST_CASE("sampler: greedy picks the argmax, lowest id on ties", "[sampler]") {
  Sampler sampler;
  SampleResult r;
  SamplingParams p;  // temperature 0
  std::vector<float> logits = {0.1f, 2.0f, -1.0f, 2.0f, 1.9f};
  sampler.Sample(logits, p, nullptr, {}, 0, &r);
  CHECK(r.token_id == 1);
  p.seed = 99;  // the seed does not matter when greedy
  sampler.Sample(logits, p, nullptr, {}, 7, &r);
  CHECK(r.token_id == 1);
}

TEST_CASE("sampler: banned ids are never chosen", "[sampler]") {
  Sampler sampler;
  SampleResult r;
  SamplingParams p;
  std::vector<float> logits = {0.0f, 5.0f, 1.0f};
  std::vector<int32_t> banned = {1};
  sampler.Sample(logits, p, nullptr, banned, 0, &r);
  CHECK(r.token_id == 2);
  p.temperature = 1.0f;
  for (int i = 0; i < 200; ++i) {
    sampler.Sample(logits, p, nullptr, banned, static_cast<uint64_t>(i), &r);
    CHECK(r.token_id != 1);
  }
}

TEST_CASE("sampler: seeded draws are deterministic per (seed, index)", "[sampler]") {
  std::vector<float> logits(64);
  for (int i = 0; i < 64; ++i) logits[i] = std::sin(static_cast<float>(i)) * 2.0f;
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 1234;
  Sampler a, b;
  std::vector<int32_t> first, second, other;
  for (uint64_t i = 0; i < 50; ++i) {
    SampleResult r;
    a.Sample(logits, p, nullptr, {}, i, &r);
    first.push_back(r.token_id);
  }
  // Another sampler, interleaved with unrelated draws: same sequence.
  SamplingParams q = p;
  q.seed = 77;
  for (uint64_t i = 0; i < 50; ++i) {
    SampleResult r, junk;
    b.Sample(logits, q, nullptr, {}, i, &junk);
    b.Sample(logits, p, nullptr, {}, i, &r);
    second.push_back(r.token_id);
    other.push_back(junk.token_id);
  }
  CHECK(first == second);
  CHECK(first != other);
  CHECK(std::set<int32_t>(first.begin(), first.end()).size() > 5);
}

TEST_CASE("sampler: SeededUniform stays within 0..1 and is spread out", "[sampler]") {
  double sum = 0;
  for (uint64_t i = 0; i < 10000; ++i) {
    double u = SeededUniform(42, i);
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    sum += u;
  }
  CHECK(sum / 10000 == Approx(0.5).margin(0.02));
}

TEST_CASE("sampler: top-k keeps the k most likely", "[sampler]") {
  std::vector<float> logits = {1.0f, 3.0f, 2.9f, 0.5f, 2.8f, -1.0f};
  SamplingParams p;
  p.temperature = 5.0f;  // flat, so every kept token shows up
  p.top_k = 3;
  CHECK(Support(logits, p, 500) == std::set<int32_t>{1, 2, 4});
  p.top_k = 1;
  CHECK(Support(logits, p, 50) == std::set<int32_t>{1});
}

TEST_CASE("sampler: top-p keeps the shortest prefix reaching p", "[sampler]") {
  // Probabilities at T=1: proportional to e^l; ln(4), ln(3), ln(2), ln(1) -> 0.4 0.3 0.2 0.1.
  std::vector<float> logits = {std::log(2.0f), std::log(4.0f), std::log(1.0f), std::log(3.0f)};
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.65f;  // 0.4 + 0.3 = 0.7 >= 0.65
  CHECK(Support(logits, p, 500) == std::set<int32_t>{1, 3});
  p.top_p = 0.35f;
  CHECK(Support(logits, p, 100) == std::set<int32_t>{1});
  p.top_p = 1.0f;
  CHECK(Support(logits, p, 1000) == std::set<int32_t>{0, 1, 2, 3});
}

TEST_CASE("sampler: min-p drops tokens below min_p * p_max", "[sampler]") {
  std::vector<float> logits = {std::log(2.0f), std::log(4.0f), std::log(1.0f), std::log(3.0f)};
  SamplingParams p;
  p.temperature = 1.0f;
  p.min_p = 0.45f;  // keep p >= 0.45 * 0.4 = 0.18: ids 1, 3, 0 (not 2 at 0.1)
  CHECK(Support(logits, p, 1000) == std::set<int32_t>{0, 1, 3});
}

TEST_CASE("sampler: draws follow the distribution", "[sampler]") {
  std::vector<float> logits = {std::log(1.0f), std::log(3.0f)};
  SamplingParams p;
  p.temperature = 1.0f;
  Sampler sampler;
  int ones = 0;
  for (uint64_t i = 0; i < 4000; ++i) {
    SampleResult r;
    sampler.Sample(logits, p, nullptr, {}, i, &r);
    ones += r.token_id;
  }
  CHECK(ones / 4000.0 == Approx(0.75).margin(0.03));
}

TEST_CASE("sampler: repetition, presence and frequency penalties", "[sampler]") {
  Sampler sampler;
  SampleResult r;
  std::vector<float> logits = {2.0f, 1.5f, 1.0f, -1.0f};

  SamplingParams rep;
  rep.repetition_penalty = 2.0f;  // 2.0 -> 1.0 (seen in the prompt)
  PenaltyHistory prompt_only;
  std::vector<int32_t> prompt = {0};
  prompt_only.AddPrompt(prompt);
  sampler.Sample(logits, rep, &prompt_only, {}, 0, &r);
  CHECK(r.token_id == 1);

  // A negative logit is multiplied: -1 -> -2 keeps it below the rest.
  std::vector<float> negative = {-1.0f, -1.5f};
  PenaltyHistory neg_history;
  neg_history.AddOutput(0);
  sampler.Sample(negative, rep, &neg_history, {}, 0, &r);
  CHECK(r.token_id == 1);

  SamplingParams presence;
  presence.presence_penalty = 0.6f;  // 2.0 - 0.6 = 1.4 < 1.5
  PenaltyHistory once;
  once.AddOutput(0);
  sampler.Sample(logits, presence, &once, {}, 0, &r);
  CHECK(r.token_id == 1);

  SamplingParams frequency;
  frequency.frequency_penalty = 0.2f;  // 2.0 - 3 * 0.2 = 1.4 < 1.5; once: 1.8 > 1.5
  sampler.Sample(logits, frequency, &once, {}, 0, &r);
  CHECK(r.token_id == 0);
  PenaltyHistory thrice;
  for (int i = 0; i < 3; ++i) thrice.AddOutput(0);
  sampler.Sample(logits, frequency, &thrice, {}, 0, &r);
  CHECK(r.token_id == 1);

  // Presence and frequency look at the output only, not the prompt.
  sampler.Sample(logits, presence, &prompt_only, {}, 0, &r);
  CHECK(r.token_id == 0);
}

TEST_CASE("sampler: logprobs of the chosen token and the top alternatives", "[sampler]") {
  Sampler sampler;
  SampleResult r;
  std::vector<float> logits = {std::log(0.1f), std::log(0.6f), std::log(0.3f)};
  SamplingParams p;
  p.logprobs = true;
  p.top_logprobs = 2;
  sampler.Sample(logits, p, nullptr, {}, 0, &r);
  CHECK(r.token_id == 1);
  CHECK(r.logprob == Approx(std::log(0.6)).margin(1e-5));
  REQUIRE(r.top.size() == 2);
  CHECK(r.top[0].token_id == 1);
  CHECK(r.top[1].token_id == 2);
  CHECK(r.top[1].logprob == Approx(std::log(0.3)).margin(1e-5));
}

TEST_CASE("sampler: parameter validation names the field", "[sampler]") {
  SamplingParams p;
  CHECK(ValidateSamplingParams(p, 20).ok());
  p.temperature = -0.1f;
  CHECK(ValidateSamplingParams(p, 20).message().find("sampling.temperature") !=
        std::string_view::npos);
  p = {};
  p.top_p = 0.0f;
  CHECK(ValidateSamplingParams(p, 20).message().find("sampling.top_p") != std::string_view::npos);
  p = {};
  p.top_k = -1;
  CHECK(ValidateSamplingParams(p, 20).message().find("sampling.top_k") != std::string_view::npos);
  p = {};
  p.top_logprobs = 21;
  CHECK(ValidateSamplingParams(p, 20).message().find("top_logprobs") != std::string_view::npos);
  p = {};
  p.min_p = 1.0f;
  CHECK(absl::IsInvalidArgument(ValidateSamplingParams(p, 20)));
}

}  // namespace
}  // namespace moegraph::sampling
