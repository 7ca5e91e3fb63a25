// Shared-KV multi-query attention with a sliding window, compressed entries
// and per-head sinks (dsv4.md "Attention").
#pragma once

#include <cstdint>

#include "kernels/cpu/batch_layout.h"

namespace moegraph::cpu {

struct AttentionParams {
  const float* q = nullptr;     // [tokens, heads, dim]
  const float* kv = nullptr;    // [tokens, dim] this step's keys (= values)
  const float* ring = nullptr;  // [num_slots, window, dim]: kv of earlier positions p at p % window
  const float* sinks = nullptr;  // [heads]
  float* out = nullptr;          // [tokens, heads, dim]
  int heads = 0;
  int dim = 0;
  int window = 0;
  int num_slots = 0;
  float scale = 1.0f;
  // Compressed keys (entries.pool null on sliding-only layers): entry e is
  // visible to position t iff (e + 1) * rate <= t + 1.
  EntryPagesView entries;
  int rate = 0;
  // CSA: [tokens, k] chosen entry ids, -1 = none; null = every visible entry.
  const int32_t* selected = nullptr;
  int k = 0;
  BatchLayout batch;
};

// Workspace bytes when a query sees at most `max_keys` keys.
int64_t AttentionWorkspaceBytes(int64_t max_keys);

// For each token at position t: keys = kv of positions max(0, t-W+1)..t (this
// step's rows, or the ring for positions before the sequence's first token in
// the step) followed by the compressed keys; per head
//   p_j = softmax_j over [s_j..., sink] with s_j = q . key_j * scale, sink dropped;
//   out = sum_j p_j key_j.
// Returns false when a needed entry has no page or a selected id is not visible.
bool Attention(const AttentionParams& p, void* workspace);

}  // namespace moegraph::cpu
