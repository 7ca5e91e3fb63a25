#include "engine/backend/operand_check.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/backend/backend.h"
#include "engine/common/status_macros.h"

namespace moegraph {
namespace {

std::string DTypesString(std::initializer_list<DType> dtypes) {
  std::vector<std::string> names;
  for (DType d : dtypes) names.push_back(DTypeName(d));
  return absl::StrJoin(names, "|");
}

bool OneOf(DType t, std::initializer_list<DType> dtypes) {
  for (DType d : dtypes) {
    if (d == t) return true;
  }
  return false;
}

}  // namespace

absl::Status OperandError(absl::string_view op, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(op, ": ", what));
}

absl::Status ExpectOperand(absl::string_view op, absl::string_view operand, const Tensor& t,
                           std::initializer_list<DType> dtypes,
                           std::initializer_list<int64_t> dims) {
  if (t.empty()) return OperandError(op, absl::StrCat(operand, " is empty"));
  bool shape_ok = t.rank == static_cast<int>(dims.size());
  int i = 0;
  std::vector<std::string> want;
  for (int64_t d : dims) {
    if (shape_ok && d != kAnyDim && t.shape[i] != d) shape_ok = false;
    want.push_back(d == kAnyDim ? "*" : std::to_string(d));
    ++i;
  }
  if (OneOf(t.dtype, dtypes) && shape_ok) return absl::OkStatus();
  return OperandError(op, absl::StrCat(operand, ": expected ", DTypesString(dtypes), " [",
                                       absl::StrJoin(want, ", "), "], found ", DTypeName(t.dtype),
                                       " ", t.ShapeString()));
}

absl::Status ExpectDType(absl::string_view op, absl::string_view operand, const Tensor& t,
                         std::initializer_list<DType> dtypes) {
  if (t.empty()) return OperandError(op, absl::StrCat(operand, " is empty"));
  if (OneOf(t.dtype, dtypes)) return absl::OkStatus();
  return OperandError(op, absl::StrCat(operand, ": expected ", DTypesString(dtypes), ", found ",
                                       DTypeName(t.dtype), " ", t.ShapeString()));
}

absl::Status ExpectNumel(absl::string_view op, absl::string_view operand, const Tensor& t,
                         int64_t want) {
  if (t.numel() == want) return absl::OkStatus();
  return OperandError(
      op, absl::StrCat(operand, ": expected ", want, " values, found ", t.ShapeString()));
}

absl::Status ExpectRank(absl::string_view op, absl::string_view operand, const Tensor& t,
                        int rank) {
  if (t.rank == rank) return absl::OkStatus();
  return OperandError(op,
                      absl::StrCat(operand, ": expected rank ", rank, ", found ", t.ShapeString()));
}

absl::Status CheckExchangeDispatch(const Tensor& x, const Tensor& idx, const Tensor& owner,
                                   const std::vector<ExchangeRegion>& to,
                                   const Tensor& rows_scratch, DType act) {
  const char* op = "ExchangeDispatch";
  if (x.rank != 2)
    return OperandError(op, absl::StrCat("x: expected [T, D], found ", x.ShapeString()));
  const int64_t T = x.dim(0), D = x.dim(1);
  if (T > 0) {
    RETURN_IF_ERROR(ExpectOperand(op, "x", x, {act}, {T, D}));
    RETURN_IF_ERROR(ExpectOperand(op, "idx", idx, {DType::kI32}, {T, kAnyDim}));
  }
  RETURN_IF_ERROR(ExpectOperand(op, "owner", owner, {DType::kI32}, {kAnyDim}));
  if (to.empty()) return OperandError(op, "to: no destination ranks");
  const int64_t R = static_cast<int64_t>(to.size());
  const int64_t cap = to[0].x.rank == 2 ? to[0].x.dim(0) : 0;
  if (T > cap) {
    return OperandError(op, absl::StrCat("x: ", T, " rows exceed the regions' capacity ", cap));
  }
  const int64_t k = to[0].experts.rank == 2 ? to[0].experts.dim(1) : 0;
  if (T > 0 && idx.dim(1) != k) {
    return OperandError(op, absl::StrCat("idx: ", idx.dim(1), " choices, the regions hold ", k));
  }
  for (int64_t r = 0; r < R; ++r) {
    const std::string n = absl::StrCat("to[", r, "].");
    RETURN_IF_ERROR(ExpectOperand(op, n + "x", to[r].x, {act}, {cap, D}));
    RETURN_IF_ERROR(ExpectOperand(op, n + "experts", to[r].experts, {DType::kI32}, {cap, k}));
    RETURN_IF_ERROR(ExpectOperand(op, n + "src_token", to[r].src_token, {DType::kI32}, {cap}));
    RETURN_IF_ERROR(ExpectOperand(op, n + "count", to[r].count, {DType::kI32}, {1}));
  }
  RETURN_IF_ERROR(ExpectDType(op, "rows_scratch", rows_scratch, {DType::kI32}));
  if (rows_scratch.numel() < T * R) {
    return OperandError(op, absl::StrCat("rows_scratch: ", rows_scratch.numel(),
                                         " entries, the step needs ", T * R));
  }
  return absl::OkStatus();
}

absl::Status CheckExchangeCombine(const Tensor& out, const Tensor& pair_dst,
                                  const Tensor& pair_count, const Tensor& src_token,
                                  const Tensor& counts, const std::vector<Tensor>& combined,
                                  DType act) {
  const char* op = "ExchangeCombine";
  RETURN_IF_ERROR(ExpectOperand(op, "out", out, {act}, {kAnyDim, kAnyDim}));
  const int64_t P = out.dim(0), D = out.dim(1);
  RETURN_IF_ERROR(ExpectOperand(op, "pair_dst", pair_dst, {DType::kI32}, {P}));
  RETURN_IF_ERROR(ExpectOperand(op, "pair_count", pair_count, {DType::kI32}, {1}));
  if (combined.empty()) return OperandError(op, "combined: no source ranks");
  const int64_t R = static_cast<int64_t>(combined.size());
  RETURN_IF_ERROR(ExpectOperand(op, "combined[0]", combined[0], {act}, {kAnyDim, kAnyDim, D}));
  const int64_t cap = combined[0].dim(0), k = combined[0].dim(1);
  for (int64_t r = 1; r < R; ++r) {
    RETURN_IF_ERROR(
        ExpectOperand(op, absl::StrCat("combined[", r, "]"), combined[r], {act}, {cap, k, D}));
  }
  RETURN_IF_ERROR(ExpectOperand(op, "src_token", src_token, {DType::kI32}, {R * cap}));
  RETURN_IF_ERROR(ExpectOperand(op, "counts", counts, {DType::kI32}, {R}));
  return absl::OkStatus();
}

}  // namespace moegraph
