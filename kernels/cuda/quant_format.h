// The weight formats the CUDA GEMMs read (engine/backend/weight.h's layouts).
#pragma once

namespace moegraph::cuda {

enum class WeightFmt : int { kBf16 = 0, kFp8 = 1, kFp4 = 2 };

// One (or E stacked) weight matrices [N, K] in a format:
//   kBf16: data bf16 [N, K];  kFp8: data e4m3 [N, K], scale_f32
//   [ceil(N/128), ceil(K/128)];  kFp4: data [N, K/2] packed e2m1,
//   scale_e8m0 [N, K/32]. Stacked matrices follow each other.
struct QuantOperand {
  const void* data = nullptr;
  const float* scale_f32 = nullptr;
  const unsigned char* scale_e8m0 = nullptr;
};

}  // namespace moegraph::cuda
