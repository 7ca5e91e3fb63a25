// Host sampling. The order of operations (documented in the proto too):
// penalties and bans on a copy of the logits, then greedy argmax, or
// temperature, top-k, min-p (relative to the most likely token), top-p over
// what is left, and one seeded draw. Log-probabilities come from the raw
// logits, the model's own distribution.
#include "engine/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_format.h"
#include "engine/common/splitmix.h"

namespace moegraph::sampling {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Most likely first; equal logits by ascending id, so the order is total.
struct ByLogitDesc {
  const float* logits;
  bool operator()(int32_t a, int32_t b) const {
    if (logits[a] != logits[b]) return logits[a] > logits[b];
    return a < b;
  }
};

void ApplyPenalties(const SamplingParams& p, const PenaltyHistory& h, std::vector<float>* work) {
  const int n = static_cast<int>(work->size());
  auto repeat = [&](int32_t id) {
    if (id < 0 || id >= n) return;
    float& l = (*work)[id];
    l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
  };
  if (p.repetition_penalty != 1.0f) {
    for (int32_t id : h.prompt_tokens()) repeat(id);
    for (const auto& [id, count] : h.output_counts()) {
      if (!h.prompt_tokens().contains(id)) repeat(id);
    }
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    for (const auto& [id, count] : h.output_counts()) {
      if (id < 0 || id >= n) continue;
      (*work)[id] -= p.presence_penalty + p.frequency_penalty * static_cast<float>(count);
    }
  }
}

}  // namespace

absl::Status ValidateSamplingParams(const SamplingParams& p, int max_top_logprobs) {
  auto bad = [](const char* field, const char* range, double got) {
    return absl::InvalidArgumentError(
        absl::StrFormat("sampling.%s: must be %s, got %g", field, range, got));
  };
  if (!(p.temperature >= 0.0f && p.temperature <= 100.0f)) {
    return bad("temperature", "in [0, 100]", p.temperature);
  }
  if (p.top_k < 0) return bad("top_k", ">= 0 (0 = off)", p.top_k);
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) return bad("top_p", "in (0, 1]", p.top_p);
  if (!(p.min_p >= 0.0f && p.min_p < 1.0f)) return bad("min_p", "in [0, 1)", p.min_p);
  if (!(p.repetition_penalty > 0.0f && p.repetition_penalty <= 10.0f)) {
    return bad("repetition_penalty", "in (0, 10]", p.repetition_penalty);
  }
  if (!(p.presence_penalty >= -2.0f && p.presence_penalty <= 2.0f)) {
    return bad("presence_penalty", "in [-2, 2]", p.presence_penalty);
  }
  if (!(p.frequency_penalty >= -2.0f && p.frequency_penalty <= 2.0f)) {
    return bad("frequency_penalty", "in [-2, 2]", p.frequency_penalty);
  }
  if (p.top_logprobs < 0 || p.top_logprobs > max_top_logprobs) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "output.top_logprobs: must be in [0, %d], got %d", max_top_logprobs, p.top_logprobs));
  }
  return absl::OkStatus();
}

void PenaltyHistory::AddPrompt(std::span<const int32_t> ids) {
  prompt_.insert(ids.begin(), ids.end());
}
void PenaltyHistory::AddOutput(int32_t id) { ++output_[id]; }

double SeededUniform(uint64_t seed, uint64_t index) {
  const uint64_t bits = SplitMix64(SplitMix64(seed) ^ (index * 0xD1B54A32D192ED03ull));
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

void Sampler::Sample(std::span<const float> logits, const SamplingParams& p,
                     const PenaltyHistory* history, std::span<const int32_t> banned, uint64_t index,
                     SampleResult* result) {
  const int n = static_cast<int>(logits.size());
  work_.assign(logits.begin(), logits.end());
  if (history != nullptr && p.has_penalties()) ApplyPenalties(p, *history, &work_);
  for (int32_t id : banned) {
    if (id >= 0 && id < n) work_[id] = kNegInf;
  }

  int32_t chosen = 0;
  if (p.greedy() || p.top_k == 1) {
    chosen = static_cast<int32_t>(std::max_element(work_.begin(), work_.end()) - work_.begin());
  } else {
    // Candidates: the top-k, or every token; sorted only when top-p needs it.
    order_.resize(n);
    std::iota(order_.begin(), order_.end(), 0);
    int m = n;
    ByLogitDesc cmp{work_.data()};
    if (p.top_k > 0 && p.top_k < n) {
      m = p.top_k;
      std::partial_sort(order_.begin(), order_.begin() + m, order_.end(), cmp);
    } else if (p.top_p < 1.0f) {
      std::sort(order_.begin(), order_.end(), cmp);
    }
    order_.resize(m);
    float max_logit = kNegInf;
    for (int32_t id : order_) max_logit = std::max(max_logit, work_[id]);
    if (max_logit == kNegInf) {
      // Everything banned: fall back to the raw argmax rather than fail.
      chosen =
          static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    } else {
      // Unnormalised probabilities relative to the most likely token (p=1),
      // so min-p is a plain threshold.
      const double inv_t = 1.0 / p.temperature;
      probs_.resize(m);
      double total = 0;
      for (int i = 0; i < m; ++i) {
        double q = std::exp((static_cast<double>(work_[order_[i]]) - max_logit) * inv_t);
        if (q < p.min_p) q = 0;
        probs_[i] = q;
        total += q;
      }
      if (p.top_p < 1.0f) {
        // order_ is sorted here: keep the shortest prefix reaching top_p.
        const double target = p.top_p * total;
        double cum = 0;
        int keep = m;
        for (int i = 0; i < m; ++i) {
          cum += probs_[i];
          if (cum >= target) {
            keep = i + 1;
            break;
          }
        }
        for (int i = keep; i < m; ++i) probs_[i] = 0;
        total = cum;
      }
      const double r = SeededUniform(p.seed, index) * total;
      double cum = 0;
      chosen = -1;
      for (int i = 0; i < m; ++i) {
        if (probs_[i] == 0) continue;
        chosen = order_[i];  // the last non-zero candidate absorbs rounding
        cum += probs_[i];
        if (r < cum) break;
      }
    }
  }
  result->token_id = chosen;
  result->top.clear();

  if (p.logprobs || p.top_logprobs > 0) {
    float max_raw = *std::max_element(logits.begin(), logits.end());
    double sum = 0;
    for (float l : logits) sum += std::exp(static_cast<double>(l) - max_raw);
    const float log_z = max_raw + static_cast<float>(std::log(sum));
    result->logprob = logits[chosen] - log_z;
    if (p.top_logprobs > 0) {
      const int k = std::min(p.top_logprobs, n);
      order_.resize(n);
      std::iota(order_.begin(), order_.end(), 0);
      std::partial_sort(order_.begin(), order_.begin() + k, order_.end(),
                        ByLogitDesc{logits.data()});
      for (int i = 0; i < k; ++i) result->top.push_back({order_[i], logits[order_[i]] - log_z});
    }
  } else {
    result->logprob = 0.0f;
  }
}

}  // namespace moegraph::sampling
