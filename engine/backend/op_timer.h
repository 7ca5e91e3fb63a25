// Per-op device timing for benchmarks, independent of the backend type (the
// CUDA backend implements it; the CPU backend has none). No CUDA types here,
// so tools that use it build without CUDA.
#pragma once

#include <array>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace moegraph {

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

}  // namespace moegraph
