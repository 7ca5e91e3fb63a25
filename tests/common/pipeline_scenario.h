// The pipelined-steps scenario shared by the CPU unit test and the [cuda]
// test: three sequences (greedy, seeded top-k, seeded top-p with logprobs),
// step 0 prefills their prompts, step k >= 1 decodes one token each. Run one
// step at a time (host-fed tokens) and pipelined (Launch N+1 before Collect
// N, tokens taken on the device), the two must agree exactly.
#pragma once

#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/sampling/sampler.h"

namespace moegraph::testing {

class PipelineScenario {
 public:
  static constexpr int kSeqs = 3;

  explicit PipelineScenario(int vocab) {
    params_[1].temperature = 0.8f;
    params_[1].top_k = 20;
    params_[1].seed = 7;
    params_[2].temperature = 1.0f;
    params_[2].top_p = 0.9f;
    params_[2].seed = 3;
    params_[2].logprobs = true;
    params_[2].top_logprobs = 2;
    for (int s = 0; s < kSeqs; ++s)
      for (int i = 0; i < kPromptLen[s]; ++i) prompts_.push_back((s * 37 + i * 11 + 1) % vocab);
  }

  // Step `step` of the sequences in slots first_slot..+2; `fed`: decode
  // tokens come from the device (ids 0 on the host), else from `last`.
  // Valid until the next call.
  StepPlan Plan(int first_slot, int step, bool fed, const std::vector<int32_t>& last) {
    REQUIRE((fed || step == 0 || last.size() >= kSeqs));
    StepPlan p;
    ids_.clear();
    int offset = 0;
    for (int s = 0; s < kSeqs; ++s) {
      const int len = step == 0 ? kPromptLen[s] : 1;
      SeqChunk ch(first_slot + s, step == 0 ? 0 : kPromptLen[s] + step - 1, offset, len, true);
      ch.sampling = &params_[s];
      ch.sample_index = static_cast<uint64_t>(step);
      ch.token_from_last_sample = fed && step > 0;
      p.seqs.push_back(ch);
      offset += len;
      if (step > 0) ids_.push_back(fed ? 0 : last[s]);
    }
    if (step == 0) ids_ = prompts_;
    p.token_ids = ids_.data();
    p.num_tokens = static_cast<int>(ids_.size());
    return p;
  }

  // Tokens per sequence and the logprob sequence's values, step by step.
  struct Trace {
    std::vector<std::vector<int32_t>> tokens = std::vector<std::vector<int32_t>>(kSeqs);
    std::vector<float> logprobs;
    bool operator==(const Trace&) const = default;
  };
  static void Record(const StepResult& r, Trace* trace) {
    REQUIRE(r.sampled);
    REQUIRE(r.ids.size() == kSeqs);
    REQUIRE(r.samples.size() == kSeqs);
    for (int s = 0; s < kSeqs; ++s) trace->tokens[s].push_back(r.ids[s]);
    trace->logprobs.push_back(r.samples[2].logprob);
    for (const auto& t : r.samples[2].top) trace->logprobs.push_back(t.logprob);
  }

  // `steps` + 1 steps on slots first_slot.., one StepAndSample at a time.
  Trace OneAtATime(Engine& e, int first_slot, int steps) {
    Trace trace;
    std::vector<int32_t> last(kSeqs);
    for (int step = 0; step <= steps; ++step) {
      StepResult r;
      REQUIRE(e.StepAndSample(Plan(first_slot, step, false, last), &r).ok());
      Record(r, &trace);
      last = r.ids;
    }
    return trace;
  }

  const sampling::SamplingParams& params(int s) const { return params_[s]; }

  // A chunk may take its token from the last sample only where its slot had
  // a sampled row in the step before: `slot` (freshly acquired) had none.
  void ExpectFedTokenRefused(Engine& e, int slot) const {
    StepPlan p;
    const int32_t zero = 0;
    p.token_ids = &zero;
    p.num_tokens = 1;
    SeqChunk ch(slot, 0, 0, 1, true);
    ch.sampling = &params_[0];
    ch.token_from_last_sample = true;
    p.seqs.push_back(ch);
    StepResult r;
    const absl::Status st = e.StepAndSample(p, &r);
    CHECK(st.code() == absl::StatusCode::kInvalidArgument);
    CHECK(std::string(st.message()).find("token_from_last_sample") != std::string::npos);
  }

 private:
  static constexpr int kPromptLen[kSeqs] = {9, 23, 4};
  sampling::SamplingParams params_[kSeqs];
  std::vector<int32_t> prompts_, ids_;
};

}  // namespace moegraph::testing
