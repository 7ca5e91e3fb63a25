// Dense and block-diagonal (grouped) projections y = x W^T with fp32 or bf16
// weights and fp32 accumulation.
#pragma once

#include <cstdint>

#include "kernels/cpu/cpu_types.h"

namespace moegraph::cpu {

struct LinearParams {
  const float* x = nullptr;  // [rows, in] with row stride x_stride (>= in)
  const void* w = nullptr;   // [out, in] row-major, w_type
  WeightType w_type = WeightType::kF32;
  float* y = nullptr;  // [rows, out] with row stride y_stride (>= out)
  int64_t rows = 0, in = 0, out = 0;
  int64_t x_stride = 0, y_stride = 0;  // 0 = dense (in, out)
};

// y[r, o] = sum_k x[r, k] * w[o, k]. Each element is summed in a fixed order
// that does not depend on `rows`, so a row gives the same bits in any batch.
void Linear(const LinearParams& p);

struct GroupedLinearParams {
  const float* x = nullptr;  // [rows, groups * in_per_group]
  const void* w = nullptr;   // [groups * out_per_group, in_per_group]
  WeightType w_type = WeightType::kF32;
  float* y = nullptr;  // [rows, groups * out_per_group]
  int64_t rows = 0, groups = 0, in_per_group = 0, out_per_group = 0;
};

// y[:, G*No:(G+1)*No] = x[:, G*Ki:(G+1)*Ki] W[G]^T, W[G] = rows G*No.. of w.
void GroupedLinear(const GroupedLinearParams& p);

}  // namespace moegraph::cpu
