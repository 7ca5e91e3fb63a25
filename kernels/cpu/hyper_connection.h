// Manifold-constrained hyper-connections (dsv4.md "mHC"): the pre mix that
// collapses n residual streams into a sub-layer input, the post mix that
// writes the sub-layer output back, and the head collapse.
#pragma once

#include <cstdint>

namespace moegraph::cpu {

struct HcPreParams {
  const float* X = nullptr;      // [tokens, n, dim] residual streams
  const float* fn = nullptr;     // [(2+n)*n, n*dim]
  const float* base = nullptr;   // [(2+n)*n]
  const float* scale = nullptr;  // [3]: pre, post, comb
  float* x_in = nullptr;         // [tokens, dim]  sum_i pre[i] X[i]
  float* post = nullptr;         // [tokens, n]
  float* comb = nullptr;         // [tokens, n, n]  C[i][j] after Sinkhorn
  int64_t tokens = 0, dim = 0;
  int n = 0;
  int sinkhorn_iters = 1;
  float hc_eps = 1e-6f;
  float norm_eps = 1e-6f;  // of the unweighted rms over the n*dim inputs
};
void HcPre(const HcPreParams& p);

struct HcPostParams {
  const float* X = nullptr;     // [tokens, n, dim]
  const float* y = nullptr;     // [tokens, dim] sub-layer output
  const float* post = nullptr;  // [tokens, n]
  const float* comb = nullptr;  // [tokens, n, n]
  float* Xout = nullptr;        // [tokens, n, dim], must not alias X
  int64_t tokens = 0, dim = 0;
  int n = 0;
};
// Xout[j] = post[j] * y + sum_i comb[i][j] * X[i].
void HcPost(const HcPostParams& p);

struct HcHeadParams {
  const float* X = nullptr;      // [tokens, n, dim]
  const float* fn = nullptr;     // [n, n*dim]
  const float* base = nullptr;   // [n]
  const float* scale = nullptr;  // [1]
  float* y = nullptr;            // [tokens, dim]
  int64_t tokens = 0, dim = 0;
  int n = 0;
  float hc_eps = 1e-6f;
  float norm_eps = 1e-6f;
};
// y = sum_i (sigmoid(fn @ urms(X) * scale + base)[i] + hc_eps) * X[i].
void HcHead(const HcHeadParams& p);

// Largest n the kernels accept (they keep per-token mixes on the stack).
constexpr int kMaxHcStreams = 16;

}  // namespace moegraph::cpu
