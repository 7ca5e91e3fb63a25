// A matrix operand as a backend stores it, with the format it carries.
//   kDense:   data bf16/f32 [.., N, K].
//   kFp8:     data F8_E4M3 [.., N, K]; scale f32 [.., ceil(N/128), ceil(K/128)]
//             (one per 128x128 block, expanded from E8M0 at load).
//   kFp4:     data U8 [.., N, K/2], two e2m1 codes a byte, element 2i low;
//             scale E8M0 [.., N, K/32] (kept as bytes: read in the GEMM's loop).
// "..": E stacked experts (MoeExperts) or none. `source` is the format of the
// checkpoint: the CPU backend stores every matrix dense (dequantized at load)
// and uses `source` to emulate the GPU's activation quantization on request.
#pragma once

#include <cstdint>
#include <string>

#include "engine/backend/tensor.h"

namespace moegraph {

enum class WeightFormat : uint8_t { kDense, kFp8, kFp4 };
const char* WeightFormatName(WeightFormat f);

struct Weight {
  Tensor data;
  Tensor scale;
  WeightFormat format = WeightFormat::kDense;
  WeightFormat source = WeightFormat::kDense;
  // The checkpoint's activation-scale rule for quantized products (scale_fmt
  // "ue8m0": powers of two), for backends that quantize activations.
  bool pow2_act_scales = false;

  Weight() = default;
  Weight(const Tensor& dense) : data(dense) {}  // NOLINT: a dense tensor is a weight
  bool empty() const { return data.empty(); }
  bool quantized() const { return format != WeightFormat::kDense; }
  // Logical rows and columns of one matrix (K counts values, not bytes).
  int64_t rows() const { return data.rank >= 2 ? data.dim(data.rank - 2) : 0; }
  int64_t cols() const {
    if (data.rank < 1) return 0;
    const int64_t last = data.dim(data.rank - 1);
    return format == WeightFormat::kFp4 ? 2 * last : last;
  }
  // Bytes of data plus scales (what a GEMM over it reads).
  size_t bytes() const { return data.bytes() + (scale.empty() ? 0 : scale.bytes()); }
};

// A checkpoint matrix in host memory as stored (a view into the mapping):
// dense bf16/f32/f16, FP8 (data F8_E4M3, scale F8_E8M0 or F32 per 128x128
// block) or FP4 (data I8/U8 [N, K/2], scale F8_E8M0 [N, K/32]). Shapes are
// validated by the loader (engine/model/weight_loader.h).
struct HostWeight {
  Tensor data;
  Tensor scale;
  WeightFormat format = WeightFormat::kDense;
  int64_t rows = 0, cols = 0;  // logical N, K
  bool pow2_act_scales = false;
  std::string name;  // the checkpoint tensor, for messages
};

}  // namespace moegraph
