#include "kernels/cpu/indexer.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "kernels/cpu/parallel.h"

namespace moegraph::cpu {
namespace {
struct Scored {
  float score;
  int32_t id;
};
// Moves the `take` largest of row[0, n) to the front, resolving ties exactly
// as torch.topk on CPU does (aten TopKImpl.h: partial_sort when take * 64 <=
// n, else nth_element; libstdc++ algorithms, comparison on the score only).
// The reference's choice among equal scores (frequent: all-relu-zero rows
// score exactly 0) decides which entries CSA attends to.
void TorchTopKOrder(Scored* row, int64_t n, int64_t take) {
  auto greater = [](const Scored& x, const Scored& y) {
    return (std::isnan(x.score) && !std::isnan(y.score)) || x.score > y.score;
  };
  if (take * 64 <= n) {
    std::partial_sort(row, row + take, row + n, greater);
  } else {
    std::nth_element(row, row + take - 1, row + n, greater);
  }
}

}  // namespace

int64_t IndexerTopKWorkspaceBytes(int64_t max_entries) {
  return MaxWorkers() * (max_entries + 1) * static_cast<int64_t>(sizeof(Scored));
}

bool IndexerTopK(const IndexerTopKParams& p, void* workspace) {
  const int width = p.keys.width;
  int64_t max_total = 0;
  for (int s = 0; s < p.batch.num_seqs; ++s) {
    const int64_t end = p.batch.seq_start_pos[s] + p.batch.seq_begin[s + 1] - p.batch.seq_begin[s];
    max_total = std::max<int64_t>(max_total, end / p.rate);
  }
  std::atomic<bool> ok{true};
  ParallelFor(p.batch.num_tokens, max_total * p.heads * width,
              [&](int64_t t0, int64_t t1, int worker) {
                Scored* row = static_cast<Scored*>(workspace) + worker * (max_total + 1);
                for (int64_t t = t0; t < t1; ++t) {
                  const int s = p.batch.token_seq[t];
                  const int slot = p.batch.seq_slot[s];
                  const int64_t seq_end =
                      p.batch.seq_start_pos[s] + p.batch.seq_begin[s + 1] - p.batch.seq_begin[s];
                  const int64_t total = seq_end / p.rate;  // entries in the cache after this step
                  const int64_t visible = (p.batch.token_pos[t] + 1) / p.rate;
                  const float* q = p.q + t * p.heads * width;
                  const float* wts = p.weights + t * p.heads;
                  for (int64_t e = 0; e < total; ++e) {
                    float score = -INFINITY;
                    if (e < visible) {
                      const float* key = p.keys.Entry(slot, e);
                      if (key == nullptr) {
                        ok = false;
                        return;
                      }
                      score = 0.0f;
                      for (int h = 0; h < p.heads; ++h) {
                        float dot = 0.0f;
                        for (int c = 0; c < width; ++c) dot += q[h * width + c] * key[c];
                        score += (std::max(dot, 0.0f) * p.softmax_scale) * wts[h];
                      }
                    }
                    row[e] = {score, static_cast<int32_t>(e)};
                  }
                  const int64_t take = std::min<int64_t>(p.k, total);
                  if (take > 0) TorchTopKOrder(row, total, take);
                  int32_t* out = p.selected + t * p.k;
                  int64_t n = 0;
                  for (int64_t i = 0; i < take; ++i) {
                    if (row[i].id < visible) out[n++] = row[i].id;
                  }
                  for (; n < p.k; ++n) out[n] = -1;
                }
              });
  return ok;
}

}  // namespace moegraph::cpu
