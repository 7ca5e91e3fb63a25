#include "kernels/cpu/exchange.h"

#include <cstring>

namespace moegraph::cpu {

int64_t ExchangeDispatch(const ExchangeDispatchParams& p) {
  const int64_t k = p.k, D = p.dim;
  for (int64_t i = 0; i < p.tokens * k; ++i) {
    if (p.idx[i] < 0 || p.idx[i] >= p.num_experts) return i;
  }
  for (size_t r = 0; r < p.to.size(); ++r) {
    const ExchangeRegionPtrs& to = p.to[r];
    const int32_t rank = static_cast<int32_t>(r);
    int32_t n = 0;
    for (int64_t t = 0; t < p.tokens; ++t) {
      const int32_t* ids = p.idx + t * k;
      bool wanted = false;
      for (int64_t i = 0; i < k; ++i) wanted |= p.owner[ids[i]] == rank;
      if (!wanted) continue;
      std::memcpy(to.x + n * D, p.x + t * D, D * sizeof(float));
      for (int64_t i = 0; i < k; ++i) to.experts[n * k + i] = p.owner[ids[i]] == rank ? ids[i] : -1;
      to.src_token[n] = static_cast<int32_t>(t);
      ++n;
    }
    *to.count = n;
  }
  return -1;
}

int64_t ExchangeCombine(const ExchangeCombineParams& p) {
  const int64_t k = p.k, D = p.dim, cap = p.capacity;
  const int64_t ranks = static_cast<int64_t>(p.combined.size());
  for (int64_t i = 0; i < p.pairs; ++i) {
    const int64_t dst = p.pair_dst[i], row = dst / k, choice = dst % k, src = row / cap;
    if (dst < 0 || src >= ranks || row % cap >= p.counts[src]) return i;
    const int64_t token = p.src_token[row];
    std::memcpy(p.combined[src] + (token * k + choice) * D, p.out + i * D, D * sizeof(float));
  }
  return -1;
}

}  // namespace moegraph::cpu
