#include "kernels/cpu/elementwise.h"

#include <algorithm>
#include <cmath>

namespace moegraph::cpu {

void Add(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void Scale(const float* x, float alpha, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * alpha;
}

void SwiGlu(const float* a, const float* b, float limit, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = std::min(a[i], limit);
    const float u = std::clamp(b[i], -limit, limit);
    const float sig = 1.0f / (1.0f + std::exp(-g));
    out[i] = (g * sig) * u;
  }
}

}  // namespace moegraph::cpu
