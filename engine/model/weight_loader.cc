#include "engine/model/weight_loader.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/status_macros.h"
#include "kernels/cpu/quant.h"

namespace moegraph {
namespace {

std::string Shape(std::initializer_list<int64_t> s) { return "[" + absl::StrJoin(s, ", ") + "]"; }

absl::StatusOr<Tensor> ReadScale(const WeightStore& ws, const std::string& base,
                                 const std::string& weight_name, const char* what,
                                 std::vector<int64_t> shape, std::vector<DType> dtypes) {
  for (const std::string& name : {base + ".scale", base + ".weight_scale_inv"}) {
    if (ws.Has(name)) return ws.Get(name, shape, dtypes);
  }
  std::vector<std::string> names;
  for (DType d : dtypes) names.push_back(DTypeName(d));
  return absl::NotFoundError(absl::StrCat(weight_name, " is ", what, " but its scale ", base,
                                          ".scale (", absl::StrJoin(names, " or "), " [",
                                          absl::StrJoin(shape, ", "), "]) is missing"));
}

}  // namespace

absl::StatusOr<HostWeight> ReadMatrix(const WeightStore& ws, const std::vector<std::string>& bases,
                                      int64_t rows, int64_t cols, const QuantConfig& quant) {
  const std::string* base = nullptr;
  for (const std::string& b : bases) {
    if (ws.Has(b + ".weight")) {
      base = &b;
      break;
    }
  }
  if (base == nullptr) {
    return absl::NotFoundError(absl::StrCat("checkpoint lacks ", bases.front(),
                                            ".weight (expected ", Shape({rows, cols}), ")"));
  }
  const std::string name = *base + ".weight";
  ASSIGN_OR_RETURN(Tensor raw, ws.Get(name));
  HostWeight w;
  w.rows = rows;
  w.cols = cols;
  w.name = name;
  w.pow2_act_scales = quant.pow2_scales;
  const int64_t b = quant::kFp8Block;
  if (raw.dtype == DType::kBF16 || raw.dtype == DType::kF32 || raw.dtype == DType::kF16) {
    ASSIGN_OR_RETURN(w.data, ws.Get(name, {rows, cols}));
    w.format = WeightFormat::kDense;
    return w;
  }
  if (raw.dtype == DType::kF8E4M3) {
    ASSIGN_OR_RETURN(w.data, ws.Get(name, {rows, cols}));
    ASSIGN_OR_RETURN(w.scale,
                     ReadScale(ws, *base, name, "F8_E4M3", {(rows + b - 1) / b, (cols + b - 1) / b},
                               {DType::kE8M0, DType::kF32}));
    w.format = WeightFormat::kFp8;
    return w;
  }
  if (raw.dtype == DType::kI8 || raw.dtype == DType::kU8) {
    if (cols % quant::kFp4Group != 0) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": packed FP4 needs K divisible by ",
                                                     quant::kFp4Group, ", K is ", cols));
    }
    ASSIGN_OR_RETURN(w.data, ws.Get(name, {rows, cols / 2}));
    w.data.dtype = DType::kU8;
    ASSIGN_OR_RETURN(w.scale, ReadScale(ws, *base, name, "packed FP4 (I8)",
                                        {rows, cols / quant::kFp4Group}, {DType::kE8M0}));
    w.format = WeightFormat::kFp4;
    return w;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      name, ": dtype ", DTypeName(raw.dtype),
      " is not a matrix format (expected BF16, F32 or F16; F8_E4M3 with an F8_E8M0 or F32 "
      "block scale; or I8/U8 packed FP4 with an F8_E8M0 scale)"));
}

}  // namespace moegraph
