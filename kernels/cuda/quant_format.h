// The weight formats the CUDA GEMMs read (engine/backend/weight.h's layouts).
#pragma once

namespace moegraph::cuda {

enum class WeightFmt : int { kBf16 = 0, kFp8 = 1, kFp4 = 2 };

}  // namespace moegraph::cuda
