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

void RunExpertFfn(const ExpertFfn& f, int64_t n, float* x, float* a, float* b, float* y) {
  // Emulating the GPU: each product's input quantized as the reference does.
  auto quantize = [&](float* rows, int64_t width) {
    if (!f.quantize_inputs) return;
    for (int64_t r = 0; r < n; ++r)
      quant::QuantizeActivationRow(rows + r * width, width, f.pow2_scales);
  };
  quantize(x, f.dim);
  LinearParams lp;
  lp.x = x;
  lp.w_type = f.w_type;
  lp.rows = n;
  lp.in = f.dim;
  lp.out = f.ffn;
  lp.w = f.w1;
  lp.y = a;
  Linear(lp);
  lp.w = f.w3;
  lp.y = b;
  Linear(lp);
  SwiGlu(a, b, f.limit, a, n * f.ffn);
  quantize(a, f.ffn);
  lp.x = a;
  lp.in = f.ffn;
  lp.out = f.dim;
  lp.w = f.w2;
  lp.y = y;
  Linear(lp);
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
    RunExpertFfn(ExpertFfnOf(p, e), n, xe, a, b, ye);
    for (int64_t r = 0; r < n; ++r) {
      float* o = p.out + static_cast<int64_t>(rows[r]) * p.dim;
      const float* y = ye + r * p.dim;
      for (int64_t c = 0; c < p.dim; ++c) o[c] += y[c] * row_w[r];
    }
  }
  return true;
}

}  // namespace moegraph::cpu
