#include "kernels/cpu/expert_pairs.h"

#include <algorithm>

#include "kernels/cpu/experts.h"

namespace moegraph::cpu {

int64_t MoeExpertPairsWorkspaceBytes(int64_t pairs, int64_t dim, int64_t ffn) {
  // Gathered inputs, gate and up.
  return pairs * (dim + 2 * ffn) * static_cast<int64_t>(sizeof(float));
}

bool MoeExpertPairs(const MoeExpertPairsParams& p, void* workspace) {
  const int last = p.first_expert + p.local_experts;
  for (int s = 0; s < p.sources; ++s) {
    if (p.counts[s] < 0 || p.counts[s] > p.capacity) return false;
    for (int64_t j = 0; j < p.counts[s]; ++j) {
      const int32_t* e = p.experts + (static_cast<int64_t>(s) * p.capacity + j) * p.k;
      for (int i = 0; i < p.k; ++i) {
        if (e[i] != -1 && (e[i] < p.first_expert || e[i] >= last)) return false;
      }
    }
  }
  const int64_t max_rows = static_cast<int64_t>(p.sources) * p.capacity * p.k;
  float* xe = static_cast<float*>(workspace);
  float* a = xe + max_rows * p.dim;
  float* b = a + max_rows * p.ffn;
  int64_t total = 0;
  for (int le = 0; le < p.local_experts; ++le) {
    const int32_t expert = p.first_expert + le;
    int64_t n = 0;
    for (int s = 0; s < p.sources; ++s) {
      for (int64_t j = 0; j < p.counts[s]; ++j) {
        const int64_t row = static_cast<int64_t>(s) * p.capacity + j;
        for (int i = 0; i < p.k; ++i) {
          if (p.experts[row * p.k + i] != expert) continue;
          if (total + n >= p.pair_capacity) return false;
          p.pair_dst[total + n] = static_cast<int32_t>(row * p.k + i);
          std::copy(p.x + row * p.dim, p.x + (row + 1) * p.dim, xe + n * p.dim);
          ++n;
        }
      }
    }
    if (n == 0) continue;
    // The down projection lands in the caller's buffer (the combine send
    // buffer): no staging copy between the GEMM and the exchange.
    RunExpertFfn(ExpertFfnOf(p, le), n, xe, a, b, p.out + total * p.dim);
    total += n;
  }
  p.pair_count[0] = static_cast<int32_t>(total);
  return true;
}

void MoeWeightedSum(const MoeWeightedSumParams& p) {
  constexpr int kMaxK = 64;
  int order[kMaxK];
  for (int64_t t = 0; t < p.tokens; ++t) {
    const int32_t* ids = p.idx + t * p.k;
    // Choices by expert id, ties in choice order (insertion sort: k is small).
    for (int i = 0; i < p.k; ++i) {
      int j = i;
      while (j > 0 && ids[order[j - 1]] > ids[i]) {
        order[j] = order[j - 1];
        --j;
      }
      order[j] = i;
    }
    float* o = p.out + t * p.dim;
    std::fill(o, o + p.dim, 0.0f);
    for (int r = 0; r < p.k; ++r) {
      const int i = order[r];
      const float* y = p.y + (t * p.k + i) * p.dim;
      const float wi = p.w[t * p.k + i];
      for (int64_t c = 0; c < p.dim; ++c) o[c] += y[c] * wi;
    }
  }
}

}  // namespace moegraph::cpu
