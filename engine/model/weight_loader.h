// Reads one checkpoint matrix with the format it is stored in: dense (BF16,
// F32, F16), FP8 (F8_E4M3 with a 128x128-block scale) or FP4 (I8/U8 pairs with
// a 1x32 E8M0 scale). The scale sits beside the weight as `NAME.scale` (the
// released checkpoints) or `NAME.weight_scale_inv` (transformers' FP8 files).
// Shapes and dtypes are checked here, with errors naming the tensor.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend/weight.h"
#include "engine/model/model_config.h"
#include "engine/weights/safetensors.h"

namespace moegraph {

// `bases` are alternative names without ".weight" (the first present wins);
// [rows, cols] is the logical shape.
absl::StatusOr<HostWeight> ReadMatrix(const WeightStore& ws, const std::vector<std::string>& bases,
                                      int64_t rows, int64_t cols, const QuantConfig& quant);

}  // namespace moegraph
