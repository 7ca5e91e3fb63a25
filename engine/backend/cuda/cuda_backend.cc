// The CUDA backend (see cuda_backend.h): validates each op's operands against
// backend.h, converts them to the launch parameters of kernels/cuda, and
// enqueues on the backend's stream. Per-op workspaces come from one scratch
// buffer that grows on demand (after a stream sync, so no queued op still
// reads the old one).
#include "engine/backend/cuda/cuda_backend.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/backend/cuda/cuda_backend_impl.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/common/bf16.h"
#include "engine/common/logging.h"
#include "engine/common/status_macros.h"
#include "kernels/cuda/exchange.h"

namespace moegraph {
namespace cuda_impl {
namespace {

constexpr size_t kGemmWorkspaceBytes = size_t{32} << 20;

// ---- host-side conversion for uploads ---------------------------------------

bool IsFloat(DType t) { return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16; }

float HostToFloat(const void* data, DType t, int64_t i) {
  switch (t) {
    case DType::kF32:
      return static_cast<const float*>(data)[i];
    case DType::kBF16:
      return Bf16ToFloat(static_cast<const uint16_t*>(data)[i]);
    case DType::kF16:
      return F16ToFloat(static_cast<const uint16_t*>(data)[i]);
    default:
      return 0.0f;
  }
}

// Converts n host values of `from` into `to` at dst (to: F32, BF16 or I32).
void ConvertHost(const void* src, DType from, void* dst, DType to, int64_t n) {
  if (to == DType::kI32) {
    auto* out = static_cast<int32_t*>(dst);
    for (int64_t i = 0; i < n; ++i)
      out[i] = from == DType::kI64 ? static_cast<int32_t>(static_cast<const int64_t*>(src)[i])
                                   : static_cast<const int32_t*>(src)[i];
  } else if (to == DType::kF32) {
    auto* out = static_cast<float*>(dst);
    for (int64_t i = 0; i < n; ++i) out[i] = HostToFloat(src, from, i);
  } else {
    auto* out = static_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) out[i] = FloatToBf16(HostToFloat(src, from, i));
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<CudaBackendImpl>> CudaBackendImpl::Create(int device) {
  int count = 0;
  const cudaError_t probe = cudaGetDeviceCount(&count);
  if (probe != cudaSuccess || count == 0) {
    return absl::UnavailableError(absl::StrCat(
        "no CUDA device: ", probe != cudaSuccess ? cudaGetErrorString(probe) : "none found"));
  }
  if (device < 0 || device >= count)
    return absl::InvalidArgumentError(
        absl::StrFormat("cuda device %d does not exist (%d devices)", device, count));
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  cudaDeviceProp prop{};
  CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, device));
  std::unique_ptr<CudaBackendImpl> b(
      new CudaBackendImpl(device, absl::StrFormat("cuda:%d (%s)", device, prop.name)));
  b->num_sms_ = prop.multiProcessorCount;
  ASSIGN_OR_RETURN(b->stream_, CudaStream::Create());
  ASSIGN_OR_RETURN(b->lt_, CublasLtHandle::Create());
  b->gemm_ = std::make_unique<CublasLtGemm>(b->lt_.get());
  ASSIGN_OR_RETURN(b->gemm_workspace_, DeviceBuffer::Allocate(kGemmWorkspaceBytes));
  // Before any rank of this process waits on the device (kernels/cuda/exchange.h).
  CUDA_RETURN_IF_ERROR(cuda::PreloadExchangeKernels());
  if (const char* side = std::getenv("MOEGRAPH_SIDE_STREAM"); side != nullptr) {
    b->side_enabled_ = std::string(side) != "0";
  }
  LOG_VERBOSE << "cuda backend created on " << b->name_;
  return b;
}

CudaBackendImpl::~CudaBackendImpl() {
  // Queued work may still use buffers owned by members: drain first. An error
  // here was already reported by the op that caused it.
  if (side_.stream.get()) {
    const cudaError_t e = cudaStreamSynchronize(side_.stream.get());
    if (e != cudaSuccess) {
      LOG_ERROR << "cuda backend teardown: " << cudaGetErrorString(e);
    }
  }
  if (stream_.get()) {
    const cudaError_t e = cudaStreamSynchronize(stream_.get());
    if (e != cudaSuccess) {
      LOG_ERROR << "cuda backend teardown: " << cudaGetErrorString(e);
    }
  }
  LOG_VERBOSE << "cuda backend destroyed on " << name_;
}

absl::StatusOr<void*> CudaBackendImpl::Scratch(size_t bytes) {
  DeviceBuffer& scratch = lane_scratch();
  if (bytes <= scratch.bytes()) return scratch.data();
  if (frozen_) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s: an op needs %d bytes of workspace but %d were reserved at load (workspaces are "
        "frozen while graphs hold them)",
        name_, bytes, scratch.bytes()));
  }
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream()));
  ++counters_.synchronizations;
  const size_t grown = std::max(bytes, scratch.bytes() + scratch.bytes() / 2);
  if (scratch.bytes() > 0) ++counters_.frees;
  scratch.Reset();
  ASSIGN_OR_RETURN(scratch, DeviceBuffer::Allocate((grown + 255) & ~size_t{255}));
  ++counters_.allocations;
  return scratch.data();
}

absl::Status CudaBackendImpl::Gemm(const GemmProblem& p, const void* x, const void* w, void* y) {
  DeviceBuffer& ws = lane_gemm_workspace();
  return gemm_->Run(p, x, w, y, ws.data(), ws.bytes(), stream());
}

absl::Status CudaBackendImpl::BeginSide() {
  if (!side_enabled_) return absl::OkStatus();
  if (on_side_) return absl::FailedPreconditionError("BeginSide: already on the side stream");
  if (side_pending_) {
    return absl::FailedPreconditionError("BeginSide: the last side work was not joined");
  }
  RETURN_IF_ERROR(Activate());
  if (!side_.stream.get()) {
    ASSIGN_OR_RETURN(side_.stream, CudaStream::Create());
    ASSIGN_OR_RETURN(side_.gemm_workspace, DeviceBuffer::Allocate(kGemmWorkspaceBytes));
    ASSIGN_OR_RETURN(side_.fork, CudaEvent::Create(/*timing=*/false));
    ASSIGN_OR_RETURN(side_.join, CudaEvent::Create(/*timing=*/false));
    ++counters_.allocations;  // the workspace
  }
  // In a capture the side stream joins it through the fork event.
  CUDA_RETURN_IF_ERROR(cudaEventRecord(side_.fork.get(), stream_.get()));
  CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(side_.stream.get(), side_.fork.get(), 0));
  on_side_ = true;
  side_pending_ = true;
  return absl::OkStatus();
}

absl::Status CudaBackendImpl::EndSide() {
  if (!on_side_) return absl::OkStatus();
  on_side_ = false;
  CUDA_RETURN_IF_ERROR(cudaEventRecord(side_.join.get(), side_.stream.get()));
  return absl::OkStatus();
}

absl::Status CudaBackendImpl::JoinSide() {
  RETURN_IF_ERROR(EndSide());
  if (!side_pending_) return absl::OkStatus();
  side_pending_ = false;
  CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream_.get(), side_.join.get(), 0));
  return absl::OkStatus();
}

int CudaBackendImpl::BeginOp(OpKind kind) {
  const int pair = static_cast<int>(timed_ops_.size());
  while (static_cast<int>(events_.size()) < 2 * (pair + 1)) {
    auto e = CudaEvent::Create(/*timing=*/true);
    if (!e.ok()) {
      LOG_WARN << "op timing disabled: " << e.status();
      timing_ = false;
      return -1;
    }
    events_.push_back(std::move(*e));
  }
  if (cudaEventRecord(events_[2 * pair].get(), stream()) != cudaSuccess) return -1;
  timed_ops_.emplace_back(kind, pair);
  return pair;
}

void CudaBackendImpl::EndOp(int pair) {
  CUDA_CHECK_OR_ABORT(cudaEventRecord(events_[2 * pair + 1].get(), stream()));
}

absl::Status CudaBackendImpl::Enable(bool on) {
  RETURN_IF_ERROR(Synchronize());
  timing_ = on;
  timed_ops_.clear();
  return absl::OkStatus();
}

absl::StatusOr<std::array<double, static_cast<int>(OpKind::kCount)>> CudaBackendImpl::Collect() {
  RETURN_IF_ERROR(Synchronize());
  std::array<double, static_cast<int>(OpKind::kCount)> ms{};
  for (const auto& [kind, pair] : timed_ops_) {
    float t = 0.0f;
    CUDA_RETURN_IF_ERROR(
        cudaEventElapsedTime(&t, events_[2 * pair].get(), events_[2 * pair + 1].get()));
    ms[static_cast<int>(kind)] += t;
  }
  timed_ops_.clear();
  return ms;
}

absl::Status CudaBackendImpl::Mark() {
  RETURN_IF_ERROR(Activate());
  if (!mark_start_.get()) {
    ASSIGN_OR_RETURN(mark_start_, CudaEvent::Create(/*timing=*/true));
    ASSIGN_OR_RETURN(mark_end_, CudaEvent::Create(/*timing=*/true));
  }
  CUDA_RETURN_IF_ERROR(cudaEventRecord(mark_start_.get(), stream()));
  return absl::OkStatus();
}

absl::StatusOr<double> CudaBackendImpl::SinceMark() {
  if (!mark_start_.get()) return absl::FailedPreconditionError("SinceMark without Mark");
  CUDA_RETURN_IF_ERROR(cudaEventRecord(mark_end_.get(), stream()));
  CUDA_RETURN_IF_ERROR(cudaEventSynchronize(mark_end_.get()));
  float ms = 0.0f;
  CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, mark_start_.get(), mark_end_.get()));
  return static_cast<double>(ms);
}

absl::Status CudaBackendImpl::BeginCapture() {
  RETURN_IF_ERROR(Synchronize());
  return BeginGraphCapture();
}

absl::StatusOr<double> CudaBackendImpl::EndCaptureAndTime(int replays) {
  ASSIGN_OR_RETURN(CudaGraphExec exec, EndCapture());           // timed, then dropped
  CUDA_RETURN_IF_ERROR(cudaGraphLaunch(exec.get(), stream()));  // warm-up
  RETURN_IF_ERROR(Mark());
  for (int i = 0; i < replays; ++i) CUDA_RETURN_IF_ERROR(cudaGraphLaunch(exec.get(), stream()));
  ASSIGN_OR_RETURN(const double ms, SinceMark());
  return ms / std::max(1, replays);
}

// ---- memory -------------------------------------------------------------------

absl::StatusOr<Buffer> CudaBackendImpl::Allocate(size_t bytes) {
  RETURN_IF_ERROR(Activate());
  void* ptr = nullptr;
  if (bytes > 0) CUDA_RETURN_IF_ERROR(cudaMalloc(&ptr, bytes));
  ++counters_.allocations;
  LOG_VERBOSE << name_ << ": allocated " << ptr << " (" << bytes << " bytes)";
  return Buffer(this, ptr, bytes);
}

void CudaBackendImpl::Free(void* ptr) {
  if (!ptr) return;
  CUDA_CHECK_OR_ABORT(cudaSetDevice(device_));
  // cudaFree waits for queued work on the device, so in-flight ops never see
  // their memory disappear.
  CUDA_CHECK_OR_ABORT(cudaFree(ptr));
  ++counters_.frees;
  LOG_VERBOSE << name_ << ": freed " << ptr;
}

absl::Status CudaBackendImpl::Upload(void* dst, const void* src, size_t bytes) {
  RETURN_IF_ERROR(Activate());
  if (bytes == 0) return absl::OkStatus();
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
  ++counters_.uploads;
  return absl::OkStatus();
}

absl::Status CudaBackendImpl::Download(void* dst, const void* src, size_t bytes) {
  RETURN_IF_ERROR(Activate());
  if (bytes > 0)
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
  ++counters_.downloads;
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream()));
  ++counters_.synchronizations;
  return absl::OkStatus();
}

absl::Status CudaBackendImpl::DownloadAsync(void* dst, const void* src, size_t bytes) {
  RETURN_IF_ERROR(Activate());
  if (bytes == 0) return absl::OkStatus();
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
  ++counters_.downloads;
  return absl::OkStatus();
}

// Portable: a pinned block one rank allocates may be read by its peers' devices
// (the in-process exchange's meeting words).
absl::StatusOr<HostMemory> CudaBackendImpl::AllocateHost(size_t bytes) {
  RETURN_IF_ERROR(Activate());
  void* p = nullptr;
  CUDA_RETURN_IF_ERROR(cudaHostAlloc(&p, bytes > 0 ? bytes : 1, cudaHostAllocPortable));
  LOG_VERBOSE << name_ << ": pinned " << p << " (" << bytes << " bytes)";
  return HostMemory(p, [](void* q) { CUDA_CHECK_OR_ABORT(cudaFreeHost(q)); });
}

absl::Status CudaBackendImpl::RecordFence(int fence) {
  if (fence < 0 || fence >= kNumFences) return Invalid("RecordFence", "fence out of range");
  RETURN_IF_ERROR(Activate());
  if (!fences_[fence].get()) {
    ASSIGN_OR_RETURN(fences_[fence], CudaEvent::Create(/*timing=*/false));
  }
  CUDA_RETURN_IF_ERROR(cudaEventRecord(fences_[fence].get(), stream()));
  ++counters_.fence_records;
  return absl::OkStatus();
}

absl::Status CudaBackendImpl::WaitFence(int fence) {
  if (fence < 0 || fence >= kNumFences) return Invalid("WaitFence", "fence out of range");
  if (!fences_[fence].get()) return absl::OkStatus();
  CUDA_RETURN_IF_ERROR(cudaEventSynchronize(fences_[fence].get()));
  ++counters_.fence_waits;
  return absl::OkStatus();
}

int64_t CudaBackendImpl::device_memory_used() const {
  size_t free = 0, total = 0;
  if (cudaSetDevice(device_) != cudaSuccess || cudaMemGetInfo(&free, &total) != cudaSuccess)
    return -1;
  return static_cast<int64_t>(total - free);
}

int64_t CudaBackendImpl::device_memory_total() const {
  size_t free = 0, total = 0;
  if (cudaSetDevice(device_) != cudaSuccess || cudaMemGetInfo(&free, &total) != cudaSuccess)
    return -1;
  return static_cast<int64_t>(total);
}

absl::Status CudaBackendImpl::BeginGraphCapture() {
  RETURN_IF_ERROR(Activate());
  CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeThreadLocal));
  return absl::OkStatus();
}

absl::StatusOr<CudaGraphExec> CudaBackendImpl::EndCapture() {
  cudaGraph_t raw = nullptr;
  const cudaError_t e = cudaStreamEndCapture(stream(), &raw);
  CudaGraph graph(raw);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear the capture error so later calls do not see it
    return absl::InternalError(
        absl::StrFormat("%s: graph capture failed: %s", name_, cudaGetErrorString(e)));
  }
  return CudaGraphExec::Instantiate(graph);
}

absl::StatusOr<int> CudaBackendImpl::EndGraphCapture() {
  ASSIGN_OR_RETURN(CudaGraphExec exec, EndCapture());
  graphs_.push_back(std::move(exec));
  return static_cast<int>(graphs_.size()) - 1;
}

absl::Status CudaBackendImpl::LaunchGraph(int graph) {
  if (graph < 0 || graph >= static_cast<int>(graphs_.size()))
    return Invalid("LaunchGraph", absl::StrCat("no graph ", graph));
  RETURN_IF_ERROR(Activate());
  CUDA_RETURN_IF_ERROR(cudaGraphLaunch(graphs_[graph].get(), stream()));
  ++counters_.graph_launches;
  return absl::OkStatus();
}

absl::Status CudaBackendImpl::Fill(Tensor t, float value) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  ASSIGN_OR_RETURN(cuda::ElemType type, ElemTypeOf("Fill", t.dtype));
  return LaunchStatus("Fill", cuda::LaunchFill(t.data, type, t.numel(), value, stream()));
}

absl::Status CudaBackendImpl::Synchronize() {
  RETURN_IF_ERROR(Activate());
  // Joined side work is behind the main stream's; unjoined (an op failed
  // between BeginSide and JoinSide) is waited for too.
  if (side_pending_) {
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(side_.stream.get()));
  }
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_.get()));
  ++counters_.synchronizations;
  return absl::OkStatus();
}

absl::StatusOr<Tensor> CudaBackendImpl::UploadWeight(const Tensor& host, bool matrix,
                                                     std::vector<Buffer>* owner) {
  RETURN_IF_ERROR(Activate());
  if (!host.data && host.numel() > 0) return Invalid("UploadWeight", "host tensor has no data");
  DType out_type;
  if (IsFloat(host.dtype)) {
    out_type = matrix ? DType::kBF16 : DType::kF32;
  } else if (host.dtype == DType::kI32 || host.dtype == DType::kI64) {
    out_type = DType::kI32;
  } else {
    return Invalid("UploadWeight", "unsupported dtype");
  }
  const int64_t n = host.numel();
  ASSIGN_OR_RETURN(Buffer buf, Allocate(static_cast<size_t>(n) * DTypeSize(out_type)));
  if (out_type == host.dtype) {
    RETURN_IF_ERROR(Upload(buf.data(), host.data, buf.bytes()));
  } else {
    std::vector<uint8_t> staging(buf.bytes());
    ConvertHost(host.data, host.dtype, staging.data(), out_type, n);
    RETURN_IF_ERROR(Upload(buf.data(), staging.data(), buf.bytes()));
  }
  // The source may be freed by the caller as soon as we return.
  RETURN_IF_ERROR(Synchronize());
  Tensor t = host;
  t.data = buf.data();
  t.dtype = out_type;
  owner->push_back(std::move(buf));
  return t;
}

absl::StatusOr<Tensor> CudaBackendImpl::UploadStacked(const std::vector<Tensor>& host,
                                                      std::vector<Buffer>* owner) {
  RETURN_IF_ERROR(Activate());
  if (host.empty()) return Invalid("UploadStacked", "no matrices");
  const Tensor& first = host[0];
  if (first.rank != 2) return Invalid("UploadStacked", "matrices must have rank 2");
  for (const Tensor& h : host) {
    if (h.rank != 2 || h.shape != first.shape || !IsFloat(h.dtype) || !h.data)
      return Invalid("UploadStacked", "matrices must be float and of one shape");
  }
  const int64_t per = first.numel();
  const size_t per_bytes = static_cast<size_t>(per) * 2;
  ASSIGN_OR_RETURN(Buffer buf, Allocate(per_bytes * host.size()));
  std::vector<uint8_t> staging;
  for (size_t e = 0; e < host.size(); ++e) {
    void* dst = static_cast<char*>(buf.data()) + e * per_bytes;
    if (host[e].dtype == DType::kBF16) {
      RETURN_IF_ERROR(Upload(dst, host[e].data, per_bytes));
    } else {
      RETURN_IF_ERROR(Synchronize());  // staging is reused
      staging.resize(per_bytes);
      ConvertHost(host[e].data, host[e].dtype, staging.data(), DType::kBF16, per);
      RETURN_IF_ERROR(Upload(dst, staging.data(), per_bytes));
    }
  }
  RETURN_IF_ERROR(Synchronize());
  Tensor t(buf.data(), DType::kBF16,
           {static_cast<int64_t>(host.size()), first.dim(0), first.dim(1)});
  owner->push_back(std::move(buf));
  return t;
}

}  // namespace cuda_impl

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(int device,
                                                           const BackendOptions& options) {
  if (options.w8a8_min_rows < 0)
    return absl::InvalidArgumentError("w8a8_min_rows must be >= 0 (0 = never)");
  ASSIGN_OR_RETURN(std::unique_ptr<cuda_impl::CudaBackendImpl> b,
                   cuda_impl::CudaBackendImpl::Create(device));
  b->set_w8a8_min_rows(options.w8a8_min_rows);
  return std::unique_ptr<Backend>(std::move(b));
}

OpTimer* CudaOpTimer(Backend* backend) {
  return dynamic_cast<cuda_impl::CudaBackendImpl*>(backend);
}

}  // namespace moegraph
