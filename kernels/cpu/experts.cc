#include "kernels/cpu/experts.h"

#include <algorithm>

#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/quant.h"

namespace moegraph::cpu {

int64_t MoeExpertsWorkspaceBytes(int64_t tokens, int64_t dim, int64_t ffn) {
  // Gathered inputs, gate, up, outputs, and the (token, weight) lists.
  return (tokens * (2 * dim + 2 * ffn)) * static_cast<int64_t>(sizeof(float)) +
         tokens * static_cast<int64_t>(sizeof(int32_t) + sizeof(float));
}

bool MoeExperts(const MoeExpertsParams& p, void* workspace) {
  for (int64_t i = 0; i < p.tokens * p.k; ++i) {
    if (p.idx[i] < 0 || p.idx[i] >= p.experts) return false;
  }
  float* xe = static_cast<float*>(workspace);
  float* a = xe + p.tokens * p.dim;
  float* b = a + p.tokens * p.ffn;
  float* ye = b + p.tokens * p.ffn;
  int32_t* rows = reinterpret_cast<int32_t*>(ye + p.tokens * p.dim);
  float* row_w = reinterpret_cast<float*>(rows + p.tokens);
  std::fill(p.out, p.out + p.tokens * p.dim, 0.0f);
  const int64_t elem = p.w_type == WeightType::kBF16 ? 2 : 4;
  for (int e = 0; e < p.experts; ++e) {
    int64_t n = 0;
    // One row per token: a token that lists e more than once (a hash table
    // may) gets the sum of its weights, so n <= tokens (the workspace's rows).
    for (int64_t t = 0; t < p.tokens; ++t) {
      bool routed = false;
      float weight = 0.0f;
      for (int i = 0; i < p.k; ++i) {
        if (p.idx[t * p.k + i] != e) continue;
        weight = routed ? weight + p.w[t * p.k + i] : p.w[t * p.k + i];
        routed = true;
      }
      if (!routed) continue;
      rows[n] = static_cast<int32_t>(t);
      row_w[n] = weight;
      std::copy(p.x + t * p.dim, p.x + (t + 1) * p.dim, xe + n * p.dim);
      ++n;
    }
    if (n == 0) continue;
    if (p.quantize_inputs) {
      for (int64_t r = 0; r < n; ++r)
        quant::QuantizeActivationRow(xe + r * p.dim, p.dim, p.pow2_scales);
    }
    LinearParams lp;
    lp.x = xe;
    lp.w_type = p.w_type;
    lp.rows = n;
    lp.in = p.dim;
    lp.out = p.ffn;
    lp.w = static_cast<const char*>(p.w1) + e * p.ffn * p.dim * elem;
    lp.y = a;
    Linear(lp);
    lp.w = static_cast<const char*>(p.w3) + e * p.ffn * p.dim * elem;
    lp.y = b;
    Linear(lp);
    SwiGlu(a, b, p.limit, a, n * p.ffn);
    if (p.quantize_inputs) {
      for (int64_t r = 0; r < n; ++r)
        quant::QuantizeActivationRow(a + r * p.ffn, p.ffn, p.pow2_scales);
    }
    lp.x = a;
    lp.in = p.ffn;
    lp.out = p.dim;
    lp.w = static_cast<const char*>(p.w2) + e * p.dim * p.ffn * elem;
    lp.y = ye;
    Linear(lp);
    for (int64_t r = 0; r < n; ++r) {
      float* o = p.out + static_cast<int64_t>(rows[r]) * p.dim;
      const float* y = ye + r * p.dim;
      for (int64_t c = 0; c < p.dim; ++c) o[c] += y[c] * row_w[r];
    }
  }
  return true;
}

}  // namespace moegraph::cpu
