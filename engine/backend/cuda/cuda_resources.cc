// RAII owners of CUDA handles (see cuda_resources.h).
#include "engine/backend/cuda/cuda_resources.h"

#include "engine/backend/cuda/cuda_check.h"
#include "engine/common/logging.h"

namespace moegraph {

absl::StatusOr<CudaStream> CudaStream::Create() {
  CudaStream s;
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&s.stream_, cudaStreamNonBlocking));
  LOG_VERBOSE << "cuda stream created " << static_cast<void*>(s.stream_);
  return s;
}
CudaStream& CudaStream::operator=(CudaStream&& o) noexcept {
  if (this != &o) {
    Reset();
    stream_ = std::exchange(o.stream_, nullptr);
  }
  return *this;
}
void CudaStream::Reset() {
  if (!stream_) return;
  LOG_VERBOSE << "cuda stream destroyed " << static_cast<void*>(stream_);
  CUDA_CHECK_OR_ABORT(cudaStreamDestroy(stream_));
  stream_ = nullptr;
}

absl::StatusOr<CudaEvent> CudaEvent::Create(bool timing) {
  CudaEvent e;
  CUDA_RETURN_IF_ERROR(
      cudaEventCreateWithFlags(&e.event_, timing ? cudaEventDefault : cudaEventDisableTiming));
  LOG_VERBOSE << "cuda event created " << static_cast<void*>(e.event_);
  return e;
}
CudaEvent& CudaEvent::operator=(CudaEvent&& o) noexcept {
  if (this != &o) {
    Reset();
    event_ = std::exchange(o.event_, nullptr);
  }
  return *this;
}
void CudaEvent::Reset() {
  if (!event_) return;
  LOG_VERBOSE << "cuda event destroyed " << static_cast<void*>(event_);
  CUDA_CHECK_OR_ABORT(cudaEventDestroy(event_));
  event_ = nullptr;
}

absl::StatusOr<DeviceBuffer> DeviceBuffer::Allocate(size_t bytes) {
  DeviceBuffer b;
  if (bytes == 0) return b;
  CUDA_RETURN_IF_ERROR(cudaMalloc(&b.ptr_, bytes));
  b.bytes_ = bytes;
  LOG_VERBOSE << "cuda device buffer allocated " << b.ptr_ << " (" << bytes << " bytes)";
  return b;
}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    Reset();
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}
void DeviceBuffer::Reset() {
  if (!ptr_) return;
  LOG_VERBOSE << "cuda device buffer freed " << ptr_ << " (" << bytes_ << " bytes)";
  CUDA_CHECK_OR_ABORT(cudaFree(ptr_));
  ptr_ = nullptr;
  bytes_ = 0;
}

CudaGraph::CudaGraph(cudaGraph_t graph) : graph_(graph) {
  if (graph_) {
    LOG_VERBOSE << "cuda graph captured " << static_cast<void*>(graph_);
  }
}
CudaGraph& CudaGraph::operator=(CudaGraph&& o) noexcept {
  if (this != &o) {
    Reset();
    graph_ = std::exchange(o.graph_, nullptr);
  }
  return *this;
}
void CudaGraph::Reset() {
  if (!graph_) return;
  LOG_VERBOSE << "cuda graph destroyed " << static_cast<void*>(graph_);
  CUDA_CHECK_OR_ABORT(cudaGraphDestroy(graph_));
  graph_ = nullptr;
}

absl::StatusOr<CudaGraphExec> CudaGraphExec::Instantiate(const CudaGraph& graph) {
  CudaGraphExec g;
  CUDA_RETURN_IF_ERROR(cudaGraphInstantiate(&g.exec_, graph.get(), 0));
  LOG_VERBOSE << "cuda graph exec created " << static_cast<void*>(g.exec_);
  return g;
}
CudaGraphExec& CudaGraphExec::operator=(CudaGraphExec&& o) noexcept {
  if (this != &o) {
    Reset();
    exec_ = std::exchange(o.exec_, nullptr);
  }
  return *this;
}
void CudaGraphExec::Reset() {
  if (!exec_) return;
  LOG_VERBOSE << "cuda graph exec destroyed " << static_cast<void*>(exec_);
  CUDA_CHECK_OR_ABORT(cudaGraphExecDestroy(exec_));
  exec_ = nullptr;
}

absl::StatusOr<CublasLtHandle> CublasLtHandle::Create() {
  CublasLtHandle h;
  CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&h.handle_));
  LOG_VERBOSE << "cublasLt handle created " << static_cast<void*>(h.handle_);
  return h;
}
CublasLtHandle& CublasLtHandle::operator=(CublasLtHandle&& o) noexcept {
  if (this != &o) {
    Reset();
    handle_ = std::exchange(o.handle_, nullptr);
  }
  return *this;
}
void CublasLtHandle::Reset() {
  if (!handle_) return;
  LOG_VERBOSE << "cublasLt handle destroyed " << static_cast<void*>(handle_);
  CUBLAS_CHECK_OR_ABORT(cublasLtDestroy(handle_));
  handle_ = nullptr;
}

}  // namespace moegraph
