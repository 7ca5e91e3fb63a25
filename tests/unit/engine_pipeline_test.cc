// Dsv4Engine's GPU step path on the CPU (EngineOptions::cpu_backend_sampling):
// the backend samples the staged rows exactly as the host sampler does, and
// pipelined steps (Launch N+1 before Collect N, tokens taken from N's samples
// on the "device") give the tokens and logprobs of steps run one at a time.
#include <catch2/catch.hpp>
#include <memory>
#include <string>

#include "engine/model/dsv4_engine.h"
#include "tests/common/pipeline_scenario.h"

namespace moegraph {
namespace {

std::unique_ptr<Dsv4Engine> CpuEngine(bool backend_sampling) {
  EngineOptions o;
  o.model_dir = std::string(MOEGRAPH_SOURCE_DIR) + "/tests/fixtures/dsv4-tiny";
  o.num_slots = 6;
  o.context_limit = 256;
  o.max_step_tokens = 64;
  o.cpu_backend_sampling = backend_sampling;
  auto e = Dsv4Engine::Create(o);
  INFO(e.status());
  REQUIRE(e.ok());
  return std::move(*e);
}

TEST_CASE("cpu engine: the backend samples as the host sampler does", "[engine][pipeline]") {
  auto host = CpuEngine(false), backend = CpuEngine(true);
  CHECK_FALSE(host->pipelines());
  REQUIRE(backend->pipelines());
  const int vocab = host->info().vocab_size;
  testing::PipelineScenario a(vocab), b(vocab);
  for (int s = 0; s < 3; ++s) {
    REQUIRE(host->AcquireSlot(s, 64).ok());
    REQUIRE(backend->AcquireSlot(s, 64).ok());
  }
  // The host side: logits rows, sampled here with the host Sampler.
  testing::PipelineScenario::Trace want;
  sampling::Sampler sampler;
  std::vector<int32_t> last(3);
  for (int step = 0; step <= 8; ++step) {
    StepResult r;
    REQUIRE(host->StepAndSample(a.Plan(0, step, false, last), &r).ok());
    REQUIRE_FALSE(r.sampled);
    StepResult as_sampled;
    as_sampled.sampled = true;
    as_sampled.samples.resize(3);
    for (int s = 0; s < 3; ++s) {
      sampler.Sample(std::span<const float>(r.logits.data() + int64_t{s} * vocab, vocab),
                     a.params(s), nullptr, {}, static_cast<uint64_t>(step), &as_sampled.samples[s]);
      as_sampled.ids.push_back(as_sampled.samples[s].token_id);
    }
    testing::PipelineScenario::Record(as_sampled, &want);
    last = as_sampled.ids;
  }
  CHECK(b.OneAtATime(*backend, 0, 8) == want);
}

TEST_CASE("cpu engine: pipelined steps give the tokens of steps run one at a time",
          "[engine][pipeline]") {
  auto e = CpuEngine(true);
  testing::PipelineScenario scenario(e->info().vocab_size);
  for (int s = 0; s < 6; ++s) REQUIRE(e->AcquireSlot(s, 64).ok());
  constexpr int kSteps = 10;
  const testing::PipelineScenario::Trace one = scenario.OneAtATime(*e, 0, kSteps);
  testing::PipelineScenario::Trace pipelined;
  std::vector<int32_t> unused;
  REQUIRE(e->Launch(scenario.Plan(3, 0, true, unused)).ok());
  for (int step = 1; step <= kSteps + 1; ++step) {
    if (step <= kSteps) {
      const absl::Status st = e->Launch(scenario.Plan(3, step, true, unused));
      INFO("launch " << step << ": " << st);
      REQUIRE(st.ok());
      CHECK(e->Launch(scenario.Plan(3, step, true, unused)).code() ==
            absl::StatusCode::kFailedPrecondition);  // two in flight already
    }
    StepResult r;
    REQUIRE(e->Collect(&r).ok());
    testing::PipelineScenario::Record(r, &pipelined);
  }
  CHECK(pipelined == one);
  CHECK(one.tokens[0] != one.tokens[1]);  // the seeds are used
  StepResult none;
  CHECK(e->Collect(&none).code() == absl::StatusCode::kFailedPrecondition);
  e->ReleaseSlot(0);
  REQUIRE(e->AcquireSlot(0, 64).ok());
  scenario.ExpectFedTokenRefused(*e, 0);
}

}  // namespace
}  // namespace moegraph
