#include "kernels/cpu/hyper_connection.h"

#include <cmath>

#include "kernels/cpu/parallel.h"
#include "kernels/cpu/rmsnorm.h"

namespace moegraph::cpu {
namespace {

inline float Sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }

// mix[o] = fn[o, :] . urms(X[t]) for o in [0, outs), dot products in the
// fixed order of Linear's accumulation.
void Mixes(const float* X, const float* fn, int64_t width, int outs, float norm_eps, float* mix) {
  const float inv = RmsInverse(X, width, norm_eps);
  for (int o = 0; o < outs; ++o) {
    const float* w = fn + o * width;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t k = 0;
    for (; k + 8 <= width; k += 8) {
      for (int l = 0; l < 8; ++l) acc[l] += (X[k + l] * inv) * w[k + l];
    }
    for (int l = 0; k < width; ++k, ++l) acc[l] += (X[k] * inv) * w[k];
    mix[o] = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  }
}

void Collapse(const float* X, const float* pre, int n, int64_t dim, float* out) {
  for (int64_t c = 0; c < dim; ++c) {
    float s = 0.0f;
    for (int i = 0; i < n; ++i) s += pre[i] * X[i * dim + c];
    out[c] = s;
  }
}

}  // namespace

void HcPre(const HcPreParams& p) {
  const int n = p.n;
  const int outs = (2 + n) * n;
  const int64_t width = n * p.dim;
  ParallelFor(p.tokens, outs * width, [&](int64_t t0, int64_t t1, int) {
    float mix[(2 + kMaxHcStreams) * kMaxHcStreams];
    float pre[kMaxHcStreams];
    for (int64_t t = t0; t < t1; ++t) {
      const float* X = p.X + t * width;
      Mixes(X, p.fn, width, outs, p.norm_eps, mix);
      float* post = p.post + t * n;
      float* C = p.comb + t * n * n;
      for (int i = 0; i < n; ++i) {
        pre[i] = Sigmoid(mix[i] * p.scale[0] + p.base[i]) + p.hc_eps;
        post[i] = 2.0f * Sigmoid(mix[n + i] * p.scale[1] + p.base[n + i]);
      }
      for (int i = 0; i < n; ++i) {  // softmax over each row, then + eps
        float* row = C + i * n;
        float mx = -INFINITY;
        for (int j = 0; j < n; ++j) {
          row[j] = mix[2 * n + i * n + j] * p.scale[2] + p.base[2 * n + i * n + j];
          mx = std::fmax(mx, row[j]);
        }
        float sum = 0.0f;
        for (int j = 0; j < n; ++j) {
          row[j] = std::exp(row[j] - mx);
          sum += row[j];
        }
        for (int j = 0; j < n; ++j) row[j] = row[j] / sum + p.hc_eps;
      }
      auto normalize_columns = [&] {
        for (int j = 0; j < n; ++j) {
          float s = 0.0f;
          for (int i = 0; i < n; ++i) s += C[i * n + j];
          for (int i = 0; i < n; ++i) C[i * n + j] /= (s + p.hc_eps);
        }
      };
      normalize_columns();
      for (int it = 0; it < p.sinkhorn_iters - 1; ++it) {
        for (int i = 0; i < n; ++i) {
          float s = 0.0f;
          for (int j = 0; j < n; ++j) s += C[i * n + j];
          for (int j = 0; j < n; ++j) C[i * n + j] /= (s + p.hc_eps);
        }
        normalize_columns();
      }
      Collapse(X, pre, n, p.dim, p.x_in + t * p.dim);
    }
  });
}

void HcPost(const HcPostParams& p) {
  const int n = p.n;
  for (int64_t t = 0; t < p.tokens; ++t) {
    const float* X = p.X + t * n * p.dim;
    const float* y = p.y + t * p.dim;
    const float* post = p.post + t * n;
    const float* C = p.comb + t * n * n;
    float* out = p.Xout + t * n * p.dim;
    for (int j = 0; j < n; ++j) {
      for (int64_t c = 0; c < p.dim; ++c) {
        float s = 0.0f;
        for (int i = 0; i < n; ++i) s += C[i * n + j] * X[i * p.dim + c];
        out[j * p.dim + c] = post[j] * y[c] + s;
      }
    }
  }
}

void HcHead(const HcHeadParams& p) {
  const int n = p.n;
  const int64_t width = n * p.dim;
  float mix[kMaxHcStreams];
  float pre[kMaxHcStreams];
  for (int64_t t = 0; t < p.tokens; ++t) {
    const float* X = p.X + t * width;
    Mixes(X, p.fn, width, n, p.norm_eps, mix);
    for (int i = 0; i < n; ++i) pre[i] = Sigmoid(mix[i] * p.scale[0] + p.base[i]) + p.hc_eps;
    Collapse(X, pre, n, p.dim, p.y + t * p.dim);
  }
}

}  // namespace moegraph::cpu
