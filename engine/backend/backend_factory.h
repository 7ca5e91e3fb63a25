// Picks the backend for a device string; the one place that knows which
// backends are built.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"

namespace moegraph {

// What a backend does differently from its defaults (each backend takes what
// applies to it).
struct BackendOptions {
  // CUDA: FP8 products of at least this many rows quantize their activations
  // to e4m3 (1x128 groups, as the released checkpoints' reference does) and
  // run cuBLASLt's block-scaled FP8 GEMM (W8A8); smaller ones, and all when
  // 0, keep the activations bf16 (W8A16).
  int w8a8_min_rows = 0;
};

// "cpu" -> the CPU backend; "cuda" / "cuda:N" -> the CUDA backend when built
// (UNIMPLEMENTED otherwise); anything else is INVALID_ARGUMENT.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const std::string& device,
                                                       const BackendOptions& options = {});

}  // namespace moegraph
