// Root-mean-square normalisation, weighted or unweighted, per row.
#pragma once

#include <cstdint>

namespace moegraph::cpu {

struct RmsNormParams {
  const float* x = nullptr;       // [rows, cols]
  const float* weight = nullptr;  // [cols], or null for the unweighted norm
  float* y = nullptr;             // [rows, cols]; may alias x
  int64_t rows = 0, cols = 0;
  float eps = 1e-6f;
};

// y = (x * rsqrt(mean(x^2) + eps)) * weight, the mean taken in double.
void RmsNorm(const RmsNormParams& p);

// 1 / sqrt(mean(x^2) + eps) of one row: the shared statistic.
float RmsInverse(const float* x, int64_t n, float eps);

}  // namespace moegraph::cpu
