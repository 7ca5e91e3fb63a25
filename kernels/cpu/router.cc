#include "kernels/cpu/router.h"

#include <algorithm>
#include <cmath>

namespace moegraph::cpu {

float Softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

bool Route(const RouteParams& p) {
  float s[kMaxRouteExperts];
  int32_t order[kMaxRouteExperts];
  for (int64_t t = 0; t < p.tokens; ++t) {
    const float* lg = p.logits + t * p.experts;
    for (int e = 0; e < p.experts; ++e) s[e] = std::sqrt(Softplus(lg[e]));
    int32_t* idx = p.idx + t * p.k;
    if (p.tid2eid != nullptr) {
      const int32_t id = p.token_ids[t];
      if (id < 0 || id >= p.vocab) return false;
      for (int i = 0; i < p.k; ++i) {
        idx[i] = p.tid2eid[static_cast<int64_t>(id) * p.k + i];
        if (idx[i] < 0 || idx[i] >= p.experts) return false;
      }
    } else {
      for (int e = 0; e < p.experts; ++e) order[e] = e;
      auto biased = [&](int32_t e) { return s[e] + (p.bias ? p.bias[e] : 0.0f); };
      std::partial_sort(order, order + p.k, order + p.experts, [&](int32_t a, int32_t b) {
        const float va = biased(a), vb = biased(b);
        return va > vb || (va == vb && a < b);
      });
      for (int i = 0; i < p.k; ++i) idx[i] = order[i];
    }
    float sum = 0.0f;
    for (int i = 0; i < p.k; ++i) sum += s[idx[i]];
    float* w = p.w + t * p.k;
    for (int i = 0; i < p.k; ++i) w[i] = s[idx[i]] / (sum + 1e-20f) * p.routed_scaling;
  }
  return true;
}

}  // namespace moegraph::cpu
