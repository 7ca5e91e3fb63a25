#include "kernels/cpu/attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "kernels/cpu/parallel.h"

namespace moegraph::cpu {

namespace {

// One worker's share of the workspace: key pointers, then logits. Rounded up
// so that the next worker's pointers stay aligned (UBSan found misaligned
// stores with an odd key count).
int64_t WorkerBytes(int64_t max_keys) {
  constexpr int64_t kAlign = alignof(const float*);
  const int64_t bytes = (max_keys + 1) * static_cast<int64_t>(sizeof(float) + sizeof(float*));
  return (bytes + kAlign - 1) / kAlign * kAlign;
}

}  // namespace

int64_t AttentionWorkspaceBytes(int64_t max_keys) { return MaxWorkers() * WorkerBytes(max_keys); }

bool Attention(const AttentionParams& p, void* workspace) {
  const int d = p.dim, H = p.heads, W = p.window;
  // Upper bound on keys per query, for carving the workspace.
  int64_t max_keys = W;
  if (p.entries.pool != nullptr) {
    if (p.selected != nullptr) {
      max_keys += p.k;
    } else {
      int64_t max_visible = 0;
      for (int t = 0; t < p.batch.num_tokens; ++t) {
        max_visible = std::max<int64_t>(max_visible, (p.batch.token_pos[t] + 1) / p.rate);
      }
      max_keys += max_visible;
    }
  }
  std::atomic<bool> ok{true};
  ParallelFor(p.batch.num_tokens, max_keys * H * d * 2, [&](int64_t t0, int64_t t1, int worker) {
    char* ws = static_cast<char*>(workspace) + worker * WorkerBytes(max_keys);
    const float** keys = reinterpret_cast<const float**>(ws);
    float* logits = reinterpret_cast<float*>(ws + (max_keys + 1) * sizeof(float*));
    for (int64_t t = t0; t < t1; ++t) {
      const int s = p.batch.token_seq[t];
      const int slot = p.batch.seq_slot[s];
      const int64_t pos = p.batch.token_pos[t];
      const int64_t p0 = p.batch.seq_start_pos[s];
      const int64_t b0 = p.batch.seq_begin[s];
      int64_t nk = 0;
      for (int64_t kp = std::max<int64_t>(0, pos - W + 1); kp <= pos; ++kp) {
        keys[nk++] = kp >= p0 ? p.kv + (b0 + kp - p0) * d
                              : p.ring + (static_cast<int64_t>(slot) * W + kp % W) * d;
      }
      if (p.entries.pool != nullptr) {
        const int64_t visible = (pos + 1) / p.rate;
        if (p.selected != nullptr) {
          for (int i = 0; i < p.k; ++i) {
            const int32_t e = p.selected[t * p.k + i];
            if (e < 0) continue;
            const float* key = e < visible ? p.entries.Entry(slot, e) : nullptr;
            if (key == nullptr) {
              ok = false;
              return;
            }
            keys[nk++] = key;
          }
        } else {
          for (int64_t e = 0; e < visible; ++e) {
            const float* key = p.entries.Entry(slot, e);
            if (key == nullptr) {
              ok = false;
              return;
            }
            keys[nk++] = key;
          }
        }
      }
      for (int h = 0; h < H; ++h) {
        const float* q = p.q + (t * H + h) * d;
        float mx = p.sinks[h];
        for (int64_t j = 0; j < nk; ++j) {
          float dot = 0.0f;
          for (int c = 0; c < d; ++c) dot += q[c] * keys[j][c];
          logits[j] = dot * p.scale;
          mx = std::max(mx, logits[j]);
        }
        float sum = std::exp(p.sinks[h] - mx);
        for (int64_t j = 0; j < nk; ++j) {
          logits[j] = std::exp(logits[j] - mx);
          sum += logits[j];
        }
        float* o = p.out + (t * H + h) * d;
        std::fill(o, o + d, 0.0f);
        for (int64_t j = 0; j < nk; ++j) {
          const float pj = logits[j] / sum;
          for (int c = 0; c < d; ++c) o[c] += pj * keys[j][c];
        }
      }
    }
  });
  return ok;
}

}  // namespace moegraph::cpu
