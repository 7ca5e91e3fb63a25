#include "engine/backend/operand_check.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

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

}  // namespace moegraph
