#include "kernels/cpu/indexer.h"

#include <algorithm>
#include <atomic>

#include "kernels/cpu/parallel.h"

namespace moegraph::cpu {
namespace {
struct Scored {
  float score;
  int32_t id;
};
}  // namespace

int64_t IndexerTopKWorkspaceBytes(int64_t max_visible) {
  return MaxWorkers() * (max_visible + 1) * static_cast<int64_t>(sizeof(Scored));
}

bool IndexerTopK(const IndexerTopKParams& p, void* workspace) {
  const int width = p.keys.width;
  int64_t max_visible = 0;
  for (int t = 0; t < p.batch.num_tokens; ++t) {
    max_visible = std::max<int64_t>(max_visible, (p.batch.token_pos[t] + 1) / p.rate);
  }
  std::atomic<bool> ok{true};
  ParallelFor(
      p.batch.num_tokens, max_visible * p.heads * width, [&](int64_t t0, int64_t t1, int worker) {
        Scored* scored = static_cast<Scored*>(workspace) + worker * (max_visible + 1);
        for (int64_t t = t0; t < t1; ++t) {
          const int slot = p.batch.seq_slot[p.batch.token_seq[t]];
          const int64_t visible = (p.batch.token_pos[t] + 1) / p.rate;
          const float* q = p.q + t * p.heads * width;
          const float* wts = p.weights + t * p.heads;
          for (int64_t e = 0; e < visible; ++e) {
            const float* key = p.keys.Entry(slot, e);
            if (key == nullptr) {
              ok = false;
              return;
            }
            float score = 0.0f;
            for (int h = 0; h < p.heads; ++h) {
              float dot = 0.0f;
              for (int c = 0; c < width; ++c) dot += q[h * width + c] * key[c];
              score += (std::max(dot, 0.0f) * p.softmax_scale) * wts[h];
            }
            scored[e] = {score, static_cast<int32_t>(e)};
          }
          const int64_t take = std::min<int64_t>(p.k, visible);
          std::partial_sort(scored, scored + take, scored + visible,
                            [](const Scored& a, const Scored& b) {
                              return a.score > b.score || (a.score == b.score && a.id < b.id);
                            });
          int32_t* out = p.selected + t * p.k;
          for (int64_t i = 0; i < p.k; ++i) out[i] = i < take ? scored[i].id : -1;
        }
      });
  return ok;
}

}  // namespace moegraph::cpu
