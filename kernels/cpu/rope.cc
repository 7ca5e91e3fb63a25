#include "kernels/cpu/rope.h"

#include <cmath>

namespace moegraph::cpu {

void RopeVector(float* x, int64_t width, int rope_dim, const float* inv_freq, int32_t pos,
                bool inverse) {
  float* r = x + (width - rope_dim);
  for (int i = 0; i < rope_dim / 2; ++i) {
    const float a = static_cast<float>(pos) * inv_freq[i];
    const float c = std::cos(a);
    const float s = inverse ? -std::sin(a) : std::sin(a);
    const float x0 = r[2 * i], x1 = r[2 * i + 1];
    r[2 * i] = x0 * c - x1 * s;
    r[2 * i + 1] = x1 * c + x0 * s;
  }
}

void Rope(const RopeParams& p) {
  for (int64_t t = 0; t < p.tokens; ++t) {
    for (int64_t h = 0; h < p.heads; ++h) {
      RopeVector(p.x + (t * p.heads + h) * p.width, p.width, p.rope_dim, p.inv_freq, p.pos[t],
                 p.inverse);
    }
  }
}

}  // namespace moegraph::cpu
