// RAII owners of CUDA handles: stream, event, device buffer, graph and graph
// exec, cuBLASLt handle (pinned host memory is a HostMemory from
// Backend::AllocateHost, freed by its deleter). Each is move-only, created through a
// static Create() that returns a Status on failure (then nothing is owned),
// and releases its handle in the destructor (a failing release is an
// invariant violation: logged, then abort). Creation and destruction are
// traced at LOG_VERBOSE.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

#include "absl/status/statusor.h"

namespace moegraph {

class CudaStream {
 public:
  CudaStream() = default;
  // A non-blocking stream on the current device.
  static absl::StatusOr<CudaStream> Create();
  CudaStream(CudaStream&& o) noexcept : stream_(std::exchange(o.stream_, nullptr)) {}
  CudaStream& operator=(CudaStream&& o) noexcept;
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  ~CudaStream() { Reset(); }
  cudaStream_t get() const { return stream_; }

 private:
  void Reset();
  cudaStream_t stream_ = nullptr;
};

class CudaEvent {
 public:
  CudaEvent() = default;
  // timing = false creates the event with cudaEventDisableTiming.
  static absl::StatusOr<CudaEvent> Create(bool timing);
  CudaEvent(CudaEvent&& o) noexcept : event_(std::exchange(o.event_, nullptr)) {}
  CudaEvent& operator=(CudaEvent&& o) noexcept;
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  ~CudaEvent() { Reset(); }
  cudaEvent_t get() const { return event_; }

 private:
  void Reset();
  cudaEvent_t event_ = nullptr;
};

// Device memory from cudaMalloc on the current device.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  static absl::StatusOr<DeviceBuffer> Allocate(size_t bytes);
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { Reset(); }
  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  // Frees now; the caller makes sure no queued work still uses the memory.
  void Reset();

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// A captured CUDA graph and its executable instance.
class CudaGraph {
 public:
  CudaGraph() = default;
  // Takes ownership of a graph from cudaStreamEndCapture (may be null).
  explicit CudaGraph(cudaGraph_t graph);
  CudaGraph(CudaGraph&& o) noexcept : graph_(std::exchange(o.graph_, nullptr)) {}
  CudaGraph& operator=(CudaGraph&& o) noexcept;
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;
  ~CudaGraph() { Reset(); }
  cudaGraph_t get() const { return graph_; }

 private:
  void Reset();
  cudaGraph_t graph_ = nullptr;
};

class CudaGraphExec {
 public:
  CudaGraphExec() = default;
  static absl::StatusOr<CudaGraphExec> Instantiate(const CudaGraph& graph);
  CudaGraphExec(CudaGraphExec&& o) noexcept : exec_(std::exchange(o.exec_, nullptr)) {}
  CudaGraphExec& operator=(CudaGraphExec&& o) noexcept;
  CudaGraphExec(const CudaGraphExec&) = delete;
  CudaGraphExec& operator=(const CudaGraphExec&) = delete;
  ~CudaGraphExec() { Reset(); }
  cudaGraphExec_t get() const { return exec_; }

 private:
  void Reset();
  cudaGraphExec_t exec_ = nullptr;
};

class CublasLtHandle {
 public:
  CublasLtHandle() = default;
  static absl::StatusOr<CublasLtHandle> Create();
  CublasLtHandle(CublasLtHandle&& o) noexcept : handle_(std::exchange(o.handle_, nullptr)) {}
  CublasLtHandle& operator=(CublasLtHandle&& o) noexcept;
  CublasLtHandle(const CublasLtHandle&) = delete;
  CublasLtHandle& operator=(const CublasLtHandle&) = delete;
  ~CublasLtHandle() { Reset(); }
  cublasLtHandle_t get() const { return handle_; }

 private:
  void Reset();
  cublasLtHandle_t handle_ = nullptr;
};

}  // namespace moegraph
