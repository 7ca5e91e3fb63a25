// Host token sampling over f32 logits: penalties, greedy, temperature with
// top-k / top-p / min-p truncation, seeded per request, and log-probabilities.
// Pure host code; a GPU sampler can sit beside it behind the same parameters.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include <unordered_map>
#include <unordered_set>
#include "absl/status/status.h"

namespace moegraph::sampling {

struct SamplingParams {
  float temperature = 0.0f;         // 0 = greedy (argmax, lowest id on ties)
  int top_k = 0;                    // 0 = off
  float top_p = 1.0f;               // (0, 1]; 1 = off
  float min_p = 0.0f;               // [0, 1); 0 = off
  float repetition_penalty = 1.0f;  // > 0; 1 = off (prompt and output tokens)
  float presence_penalty = 0.0f;    // output tokens, once
  float frequency_penalty = 0.0f;   // output tokens, per occurrence
  uint64_t seed = 0;                // the request's random stream
  bool logprobs = false;            // report the chosen token's logprob
  int top_logprobs = 0;             // report this many most likely tokens

  bool greedy() const { return temperature == 0.0f; }
  bool has_penalties() const {
    return repetition_penalty != 1.0f || presence_penalty != 0.0f || frequency_penalty != 0.0f;
  }
};

// Checks ranges; the message names the field and its allowed range.
absl::Status ValidateSamplingParams(const SamplingParams& params, int max_top_logprobs);

// The tokens a request has seen, for the penalties. One per request; the
// scheduler thread mutates it as tokens are generated.
class PenaltyHistory {
 public:
  void AddPrompt(std::span<const int32_t> ids);
  void AddOutput(int32_t id);

  const std::unordered_set<int32_t>& prompt_tokens() const { return prompt_; }
  const std::unordered_map<int32_t, int>& output_counts() const { return output_; }

 private:
  std::unordered_set<int32_t> prompt_;
  std::unordered_map<int32_t, int> output_;
};

struct TokenLogprob {
  int32_t token_id = 0;
  float logprob = 0.0f;
};

struct SampleResult {
  int32_t token_id = 0;
  float logprob = 0.0f;           // set when params.logprobs or top_logprobs > 0
  std::vector<TokenLogprob> top;  // params.top_logprobs entries, most likely first
};

// The uniform draw in [0, 1) for token `index` of a request seeded `seed`: a
// counter-based stream, so a request's draws never depend on the batch.
double SeededUniform(uint64_t seed, uint64_t index);

// Samples one token. Holds scratch buffers, so one Sampler per thread.
class Sampler {
 public:
  // `logits`: vocab_size raw model logits (not modified). `history` may be
  // null when no penalty is set. `banned`: ids that must not be chosen (EOS
  // and stop ids before min_tokens). `index`: the output token's index,
  // which advances the request's random stream.
  void Sample(std::span<const float> logits, const SamplingParams& params,
              const PenaltyHistory* history, std::span<const int32_t> banned, uint64_t index,
              SampleResult* result);

 private:
  std::vector<float> work_;
  std::vector<int32_t> order_;
  std::vector<double> probs_;
};

}  // namespace moegraph::sampling
