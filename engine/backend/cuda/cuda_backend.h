// The CUDA backend: every Backend op on one GPU and one stream, bf16
// activations with fp32 statistics, matrices through cuBLASLt, the rest through
// kernels/cuda. Weights are uploaded once (matrices bf16, other float tensors
// fp32, integers i32).
#pragma once

#include <array>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"

namespace moegraph {

// Creates the backend on GPU `device` (its own stream, cuBLASLt handle and
// workspaces). UNAVAILABLE when the machine has no usable GPU,
// INVALID_ARGUMENT when `device` is past the last one.
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(int device);

// Device time per kind of op, for benchmarks (see CudaOpTimer()).
enum class OpKind : int { kMatmul, kAttention, kCompressor, kIndexer, kMoe, kOther, kCount };
const char* OpKindName(OpKind kind);

// Optional per-op timing of a CUDA backend: while enabled every op is bracketed
// by CUDA events; Collect() waits for the stream and returns the summed
// milliseconds per kind since the last Collect() (or Enable()).
class OpTimer {
 public:
  virtual ~OpTimer() = default;
  virtual absl::Status Enable(bool on) = 0;
  virtual absl::StatusOr<std::array<double, static_cast<int>(OpKind::kCount)>> Collect() = 0;
  // Span timing on the backend's stream, independent of Enable: Mark()
  // records an event; SinceMark() records another, waits for it and returns
  // the milliseconds between the two (device idle gaps included).
  virtual absl::Status Mark() = 0;
  virtual absl::StatusOr<double> SinceMark() = 0;
  // Graph timing for benchmarks: the ops enqueued between BeginCapture() and
  // EndCaptureAndTime() are captured into a CUDA graph (not run), which is
  // then replayed `replays` times; returns milliseconds per replay. Ops must
  // be warmed up first (a workspace that grows during capture fails it).
  virtual absl::Status BeginCapture() = 0;
  virtual absl::StatusOr<double> EndCaptureAndTime(int replays) = 0;
};

// The timer of a CUDA backend, or null when `backend` is not one.
OpTimer* CudaOpTimer(Backend* backend);

}  // namespace moegraph
