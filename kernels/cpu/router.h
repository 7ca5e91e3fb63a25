// MoE routing (dsv4.md "MoE"): sqrt(softplus) scores, top-k with a bias or a
// fixed token-id hash table, normalised and scaled weights.
#pragma once

#include <cstdint>

namespace moegraph::cpu {

struct RouteParams {
  const float* logits = nullptr;       // [tokens, experts]  gate.weight @ x
  const float* bias = nullptr;         // [experts] or null (top-k mode)
  const int32_t* tid2eid = nullptr;    // [vocab, k] or null; non-null selects hash mode
  const int32_t* token_ids = nullptr;  // [tokens] (hash mode)
  int64_t tokens = 0, vocab = 0;
  int experts = 0;
  int k = 0;
  float routed_scaling = 1.0f;
  int32_t* idx = nullptr;  // [tokens, k]
  float* w = nullptr;      // [tokens, k]
};

// softplus with torch's threshold 20 (x > 20 returns x).
float Softplus(float x);

// s = sqrt(softplus(logits)); idx = topk(s + bias) (ties: lower expert id)
// or tid2eid[token]; w = s[idx] / (sum + 1e-20) * routed_scaling. Returns
// false when a token id or a table entry is out of range.
bool Route(const RouteParams& p);

// Largest expert count Route accepts (scores live on the stack).
constexpr int kMaxRouteExperts = 1024;

}  // namespace moegraph::cpu
