// Lightning-indexer scoring and top-k selection of compressed entries
// (dsv4.md "Indexer").
#pragma once

#include <cstdint>

#include "kernels/cpu/batch_layout.h"

namespace moegraph::cpu {

struct IndexerTopKParams {
  const float* q = nullptr;        // [tokens, heads, width], roped
  const float* weights = nullptr;  // [tokens, heads], already scaled by 1/sqrt(heads)
  int heads = 0;
  int rate = 0;                // entry e visible to position t iff e < (t + 1) / rate
  float softmax_scale = 1.0f;  // 1/sqrt(width)
  int k = 0;
  EntryPagesView keys;  // the indexer's entries, width = `width`
  BatchLayout batch;
  int32_t* selected = nullptr;  // [tokens, k] out: chosen visible ids, then -1
};

// Workspace bytes when a sequence holds at most `max_entries` entries after the step.
int64_t IndexerTopKWorkspaceBytes(int64_t max_entries);

// score_e = sum_h relu(q_h . K_e) * softmax_scale * weights_h over visible e.
// The choice reproduces torch.topk on CPU including its tie-breaking: the row
// holds every entry the sequence has after the step (N = (start + len) /
// rate), non-visible ones at -inf; the first min(k, N) elements after
// std::partial_sort (k * 64 <= N) or std::nth_element are taken and the
// non-visible among them dropped. Returns false when a visible entry has no page.
bool IndexerTopK(const IndexerTopKParams& p, void* workspace);

}  // namespace moegraph::cpu
