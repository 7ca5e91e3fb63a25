// Operand checks shared by every backend, so that a bad call reads the same
// on the CPU and the GPU: "OP: OPERAND: expected BF16|F32 [*, 64], found F32
// [2, 3]".
#pragma once

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "engine/backend/tensor.h"

namespace moegraph {

inline constexpr int64_t kAnyDim = -1;

// INVALID_ARGUMENT "OP: what".
absl::Status OperandError(absl::string_view op, absl::string_view what);
// Not empty, one of `dtypes`, rank = dims.size() and each dim as given
// (kAnyDim: any size).
absl::Status ExpectOperand(absl::string_view op, absl::string_view operand, const Tensor& t,
                           std::initializer_list<DType> dtypes,
                           std::initializer_list<int64_t> dims);
// Not empty and one of `dtypes`, any shape.
absl::Status ExpectDType(absl::string_view op, absl::string_view operand, const Tensor& t,
                         std::initializer_list<DType> dtypes);
absl::Status ExpectNumel(absl::string_view op, absl::string_view operand, const Tensor& t,
                         int64_t want);
absl::Status ExpectRank(absl::string_view op, absl::string_view operand, const Tensor& t, int rank);

struct ExchangeRegion;
// The operands of Backend::ExchangeDispatch and ExchangeCombine (activations
// of dtype `act`).
absl::Status CheckExchangeDispatch(const Tensor& x, const Tensor& idx, const Tensor& owner,
                                   const std::vector<ExchangeRegion>& to,
                                   const Tensor& rows_scratch, DType act);
absl::Status CheckExchangeCombine(const Tensor& out, const Tensor& pair_dst,
                                  const Tensor& pair_count, const Tensor& src_token,
                                  const Tensor& counts, const std::vector<Tensor>& combined,
                                  DType act);

}  // namespace moegraph
