#include "kernels/cpu/compressor.h"

#include <cmath>

#include "kernels/cpu/rmsnorm.h"
#include "kernels/cpu/rope.h"

namespace moegraph::cpu {
namespace {

// Pools window w of one slot into `out` (width values, before norm and rope).
void PoolWindow(const CompressorParams& p, const float* ring, int64_t w, float* out) {
  const int cw = p.cw(), rl = p.ring_len(), rate = p.rate;
  const int64_t row = 2 * cw;
  for (int ch = 0; ch < p.width; ++ch) {
    // Slots: (ring row, channel offset of c within the row); z sits cw later.
    float mx = -INFINITY;
    auto visit = [&](auto&& fn) {
      if (p.overlap) {
        if (w > 0) {
          for (int j = 0; j < rate; ++j) fn(ring + (((w - 1) * rate + j) % rl) * row + ch);
        }
        for (int j = 0; j < rate; ++j) fn(ring + ((w * rate + j) % rl) * row + p.width + ch);
      } else {
        for (int j = 0; j < rate; ++j) fn(ring + ((w * rate + j) % rl) * row + ch);
      }
    };
    visit([&](const float* cptr) { mx = std::fmax(mx, cptr[cw]); });
    float sum = 0.0f;
    visit([&](const float* cptr) { sum += std::exp(cptr[cw] - mx); });
    float acc = 0.0f;
    visit([&](const float* cptr) { acc += cptr[0] * (std::exp(cptr[cw] - mx) / sum); });
    out[ch] = acc;
  }
}

}  // namespace

bool CompressorUpdate(const CompressorParams& p) {
  const int cw = p.cw(), rl = p.ring_len();
  const int64_t row = 2 * cw;
  for (int s = 0; s < p.batch.num_seqs; ++s) {
    const int slot = p.batch.seq_slot[s];
    float* ring = p.ring + static_cast<int64_t>(slot) * rl * row;
    for (int32_t t = p.batch.seq_begin[s]; t < p.batch.seq_begin[s + 1]; ++t) {
      const int64_t pos = p.batch.seq_start_pos[s] + (t - p.batch.seq_begin[s]);
      float* dst = ring + (pos % rl) * row;
      const float* ape = p.ape + (pos % p.rate) * cw;
      for (int ch = 0; ch < cw; ++ch) {
        dst[ch] = p.c[t * cw + ch];
        dst[cw + ch] = p.z[t * cw + ch] + ape[ch];
      }
      if ((pos + 1) % p.rate != 0) continue;
      const int64_t w = pos / p.rate;
      float* entry = p.entries.Entry(slot, w);
      if (entry == nullptr) return false;
      PoolWindow(p, ring, w, entry);
      RmsNormParams norm;
      norm.x = entry;
      norm.weight = p.norm_weight;
      norm.y = entry;
      norm.rows = 1;
      norm.cols = p.width;
      norm.eps = p.eps;
      RmsNorm(norm);
      RopeVector(entry, p.width, p.rope_dim, p.inv_freq, static_cast<int32_t>(w * p.rate), false);
    }
  }
  return true;
}

}  // namespace moegraph::cpu
