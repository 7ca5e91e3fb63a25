#include "kernels/cpu/linear.h"

#include "kernels/cpu/parallel.h"

namespace moegraph::cpu {
namespace {

// Eight interleaved partial sums, reduced pairwise: fixed order, vectorisable.
template <typename W>
inline float Dot(const float* x, const W* w, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    for (int l = 0; l < 8; ++l) {
      if constexpr (sizeof(W) == 2) {
        acc[l] += x[k + l] * Bf16Bits(w[k + l]);
      } else {
        acc[l] += x[k + l] * w[k + l];
      }
    }
  }
  for (int l = 0; k < n; ++k, ++l) {
    if constexpr (sizeof(W) == 2) {
      acc[l] += x[k] * Bf16Bits(w[k]);
    } else {
      acc[l] += x[k] * w[k];
    }
  }
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

template <typename W>
void LinearTyped(const LinearParams& p) {
  const int64_t xs = p.x_stride ? p.x_stride : p.in;
  const int64_t ys = p.y_stride ? p.y_stride : p.out;
  const W* w = static_cast<const W*>(p.w);
  // Split over output columns so each weight row is read once per call and
  // stays in cache across all rows of x.
  ParallelFor(p.out, p.rows * p.in, [&](int64_t o0, int64_t o1, int) {
    constexpr int64_t kRowBlock = 16;
    for (int64_t r0 = 0; r0 < p.rows; r0 += kRowBlock) {
      int64_t r1 = r0 + kRowBlock < p.rows ? r0 + kRowBlock : p.rows;
      for (int64_t o = o0; o < o1; ++o) {
        const W* wr = w + o * p.in;
        for (int64_t r = r0; r < r1; ++r) p.y[r * ys + o] = Dot(p.x + r * xs, wr, p.in);
      }
    }
  });
}

}  // namespace

void Linear(const LinearParams& p) {
  if (p.w_type == WeightType::kBF16) {
    LinearTyped<uint16_t>(p);
  } else {
    LinearTyped<float>(p);
  }
}

void GroupedLinear(const GroupedLinearParams& p) {
  const int64_t elem = p.w_type == WeightType::kBF16 ? 2 : 4;
  for (int64_t g = 0; g < p.groups; ++g) {
    LinearParams lp;
    lp.x = p.x + g * p.in_per_group;
    lp.w = static_cast<const char*>(p.w) + g * p.out_per_group * p.in_per_group * elem;
    lp.w_type = p.w_type;
    lp.y = p.y + g * p.out_per_group;
    lp.rows = p.rows;
    lp.in = p.in_per_group;
    lp.out = p.out_per_group;
    lp.x_stride = p.groups * p.in_per_group;
    lp.y_stride = p.groups * p.out_per_group;
    Linear(lp);
  }
}

}  // namespace moegraph::cpu
