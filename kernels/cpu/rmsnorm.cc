#include "kernels/cpu/rmsnorm.h"

#include <cmath>

namespace moegraph::cpu {

float RmsInverse(const float* x, int64_t n, float eps) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float mean = static_cast<float>(ss / static_cast<double>(n));
  return 1.0f / std::sqrt(mean + eps);
}

void RmsNorm(const RmsNormParams& p) {
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* x = p.x + r * p.cols;
    float* y = p.y + r * p.cols;
    const float inv = RmsInverse(x, p.cols, p.eps);
    if (p.weight) {
      for (int64_t c = 0; c < p.cols; ++c) y[c] = p.weight[c] * (x[c] * inv);
    } else {
      for (int64_t c = 0; c < p.cols; ++c) y[c] = x[c] * inv;
    }
  }
}

}  // namespace moegraph::cpu
