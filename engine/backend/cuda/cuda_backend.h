// The CUDA backend: every Backend op on one GPU and one stream, bf16
// activations with fp32 statistics, matrices through cuBLASLt, the rest through
// kernels/cuda. Weights are uploaded once (matrices bf16, other float tensors
// fp32, integers i32).
#pragma once

#include <array>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"
#include "engine/backend/op_timer.h"

namespace moegraph {

// Creates the backend on GPU `device` (its own stream, cuBLASLt handle and
// workspaces). UNAVAILABLE when the machine has no usable GPU,
// INVALID_ARGUMENT when `device` is past the last one.
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(int device,
                                                           const BackendOptions& options = {});

// The timer of a CUDA backend, or null when `backend` is not one.
OpTimer* CudaOpTimer(Backend* backend);

}  // namespace moegraph
