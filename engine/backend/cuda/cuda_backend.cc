// The CUDA backend (see cuda_backend.h): validates each op's operands against
// backend.h, converts them to the launch parameters of kernels/cuda, and
// enqueues on the backend's stream. Per-op workspaces come from one scratch
// buffer that grows on demand (after a stream sync, so no queued op still
// reads the old one).
#include "engine/backend/cuda/cuda_backend.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/backend/cuda/cublaslt_gemm.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/cuda_resources.h"
#include "engine/common/bf16.h"
#include "engine/common/logging.h"
#include "engine/common/status_macros.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/compressor.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/hyper_connection.h"
#include "kernels/cuda/indexer.h"
#include "kernels/cuda/moe.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/router.h"

namespace moegraph {

namespace {

using bf16 = __nv_bfloat16;
constexpr size_t kGemmWorkspaceBytes = size_t{32} << 20;

// ---- operand checks ---------------------------------------------------------

absl::Status Invalid(const char* op, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("cuda ", op, ": ", what));
}

absl::Status ExpectType(const char* op, const char* name, const Tensor& t, DType want) {
  if (t.empty()) return Invalid(op, absl::StrCat(name, " is empty"));
  if (t.dtype != want)
    return Invalid(op, absl::StrCat(name, " must be ", DTypeName(want), ", got ",
                                    DTypeName(t.dtype), " ", t.ShapeString()));
  return absl::OkStatus();
}

absl::Status ExpectNumel(const char* op, const char* name, const Tensor& t, int64_t want) {
  if (t.numel() != want)
    return Invalid(op, absl::StrCat(name, " ", t.ShapeString(), " must hold ", want, " values"));
  return absl::OkStatus();
}

absl::Status ExpectRank(const char* op, const char* name, const Tensor& t, int rank) {
  if (t.rank != rank)
    return Invalid(op, absl::StrCat(name, " ", t.ShapeString(), " must have rank ", rank));
  return absl::OkStatus();
}

absl::Status LaunchStatus(const char* op, cudaError_t e) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrFormat("cuda %s: launch failed: %s (%s)", op,
                                             cudaGetErrorString(e), cudaGetErrorName(e)));
}

// Kernel-side validation message -> InvalidArgument.
absl::Status KernelCheck(const char* op, const char* msg) {
  return msg ? Invalid(op, msg) : absl::OkStatus();
}

cuda::StepMetaView MetaView(const StepMeta& m) {
  cuda::StepMetaView v;
  v.token_pos = m.token_pos.as<int32_t>();
  v.token_seq = m.token_seq.as<int32_t>();
  v.seq_begin = m.seq_begin.as<int32_t>();
  v.seq_slot = m.seq_slot.as<int32_t>();
  v.seq_start_pos = m.seq_start_pos.as<int32_t>();
  v.tokens = m.num_tokens;
  v.seqs = m.num_seqs;
  return v;
}

absl::Status CheckMeta(const char* op, const StepMeta& m) {
  RETURN_IF_ERROR(ExpectType(op, "meta.token_pos", m.token_pos, DType::kI32));
  RETURN_IF_ERROR(ExpectType(op, "meta.token_seq", m.token_seq, DType::kI32));
  RETURN_IF_ERROR(ExpectType(op, "meta.seq_begin", m.seq_begin, DType::kI32));
  RETURN_IF_ERROR(ExpectType(op, "meta.seq_slot", m.seq_slot, DType::kI32));
  RETURN_IF_ERROR(ExpectType(op, "meta.seq_start_pos", m.seq_start_pos, DType::kI32));
  if (m.token_pos.numel() < m.num_tokens || m.seq_begin.numel() < m.num_seqs + 1 ||
      m.seq_slot.numel() < m.num_seqs || m.seq_start_pos.numel() < m.num_seqs)
    return Invalid(op, "meta tensors shorter than num_tokens / num_seqs");
  return absl::OkStatus();
}

absl::StatusOr<cuda::EntryPagesView> PagesView(const char* op, const EntryPages& e) {
  RETURN_IF_ERROR(ExpectType(op, "entries.pool", e.pool, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank(op, "entries.pool", e.pool, 4));
  RETURN_IF_ERROR(ExpectType(op, "entries.table", e.table, DType::kI32));
  RETURN_IF_ERROR(ExpectRank(op, "entries.table", e.table, 2));
  if (e.page_size != e.pool.dim(1))
    return Invalid(
        op, absl::StrCat("entries.page_size ", e.page_size, " != pool dim 1 ", e.pool.dim(1)));
  if (e.layer < 0 || e.layer >= e.pool.dim(2))
    return Invalid(op, absl::StrCat("entries.layer ", e.layer, " outside the pool's ",
                                    e.pool.dim(2), " layers"));
  cuda::EntryPagesView v;
  v.pool = e.pool.as<bf16>();
  v.table = e.table.as<int32_t>();
  v.max_pages = static_cast<int>(e.table.dim(1));
  v.page_size = e.page_size;
  v.layers = static_cast<int>(e.pool.dim(2));
  v.layer = e.layer;
  v.width = static_cast<int>(e.pool.dim(3));
  return v;
}

absl::StatusOr<cuda::ElemType> ElemTypeOf(const char* op, DType t) {
  switch (t) {
    case DType::kF32:
      return cuda::ElemType::kF32;
    case DType::kBF16:
      return cuda::ElemType::kBF16;
    case DType::kI32:
      return cuda::ElemType::kI32;
    default:
      return Invalid(op, absl::StrCat("dtype ", DTypeName(t), " is not supported"));
  }
}

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

// ---- the backend ------------------------------------------------------------

class CudaBackendImpl final : public Backend, public OpTimer {
 public:
  static absl::StatusOr<std::unique_ptr<CudaBackendImpl>> Create(int device);
  ~CudaBackendImpl() override;

  std::string name() const override { return name_; }
  DType activation_dtype() const override { return DType::kBF16; }

  absl::StatusOr<Buffer> Allocate(size_t bytes) override;
  void Free(void* ptr) override;
  absl::Status Upload(void* dst, const void* src, size_t bytes) override;
  absl::Status Download(void* dst, const void* src, size_t bytes) override;
  absl::Status Fill(Tensor t, float value) override;
  absl::Status Synchronize() override;
  absl::StatusOr<Tensor> UploadWeight(const Tensor& host, bool matrix,
                                      std::vector<Buffer>* owner) override;
  absl::StatusOr<Tensor> UploadStacked(const std::vector<Tensor>& host,
                                       std::vector<Buffer>* owner) override;

  absl::Status Embed(const Tensor& ids, const Tensor& table, Tensor out) override;
  absl::Status Linear(const Tensor& x, const Tensor& w, Tensor y) override;
  absl::Status GroupedLinear(const Tensor& x, const Tensor& w, int groups, Tensor y) override;
  absl::Status RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor y) override;
  absl::Status Rope(Tensor x, const Tensor& pos, const Tensor& inv_freq, int rope_dim,
                    bool inverse) override;
  absl::Status Add(const Tensor& a, const Tensor& b, Tensor out) override;
  absl::Status Scale(const Tensor& x, float alpha, Tensor out) override;
  absl::Status SwiGlu(const Tensor& a, const Tensor& b, float limit, Tensor out) override;
  absl::Status GatherRows(const Tensor& x, const Tensor& rows, Tensor out) override;
  absl::Status Convert(const Tensor& x, Tensor out) override;
  absl::Status HcPre(const Tensor& X, const Tensor& fn, const Tensor& base, const Tensor& scale,
                     int sinkhorn_iters, float hc_eps, float norm_eps, Tensor x_in, Tensor post,
                     Tensor comb) override;
  absl::Status HcPost(const Tensor& X, const Tensor& y, const Tensor& post, const Tensor& comb,
                      Tensor Xout) override;
  absl::Status HcHead(const Tensor& X, const Tensor& fn, const Tensor& base, const Tensor& scale,
                      float hc_eps, float norm_eps, Tensor y) override;
  absl::Status CompressorUpdate(const Tensor& c, const Tensor& z, const CompressorParams& params,
                                const StepMeta& meta) override;
  absl::Status IndexerTopK(const Tensor& q, const Tensor& weights, const EntryPages& keys, int rate,
                           float softmax_scale, const StepMeta& meta, Tensor selected) override;
  absl::Status Attention(const Tensor& q, const Tensor& kv, const AttentionParams& params,
                         const StepMeta& meta, Tensor out) override;
  absl::Status WindowUpdate(const Tensor& kv, Tensor ring, const StepMeta& meta) override;
  absl::Status Route(const Tensor& logits, const Tensor& bias, const Tensor& tid2eid,
                     const Tensor& token_ids, float routed_scaling, Tensor idx, Tensor w) override;
  absl::Status MoeExperts(const Tensor& x, const Tensor& idx, const Tensor& w,
                          const ExpertWeights& experts, float swiglu_limit, Tensor out) override;

  // OpTimer
  absl::Status Enable(bool on) override;
  absl::StatusOr<std::array<double, static_cast<int>(OpKind::kCount)>> Collect() override;
  absl::Status Mark() override;
  absl::StatusOr<double> SinceMark() override;
  absl::Status BeginCapture() override;
  absl::StatusOr<double> EndCaptureAndTime(int replays) override;

 private:
  CudaBackendImpl(int device, std::string name) : device_(device), name_(std::move(name)) {}

  // Brackets one op with timing events while timing is enabled.
  class OpScope {
   public:
    OpScope(CudaBackendImpl* b, OpKind kind) : b_(b) {
      if (b_->timing_) index_ = b_->BeginOp(kind);
    }
    ~OpScope() {
      if (index_ >= 0) b_->EndOp(index_);
    }
    OpScope(const OpScope&) = delete;
    OpScope& operator=(const OpScope&) = delete;

   private:
    CudaBackendImpl* b_;
    int index_ = -1;
  };

  cudaStream_t stream() const { return stream_.get(); }
  absl::Status Activate() {
    CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    return absl::OkStatus();
  }
  // Scratch memory for one op's workspace; valid until the next call.
  absl::StatusOr<void*> Scratch(size_t bytes);
  absl::Status Gemm(const GemmProblem& p, const void* x, const void* w, void* y);
  // Largest token position of the step (from the host copies of the meta).
  absl::StatusOr<int> MaxPosition(const StepMeta& meta);
  int BeginOp(OpKind kind);
  void EndOp(int index);

  int device_;
  std::string name_;
  CudaStream stream_;  // declared first: destroyed after everything using it
  CublasLtHandle lt_;
  std::unique_ptr<CublasLtGemm> gemm_;
  DeviceBuffer gemm_workspace_;
  DeviceBuffer scratch_;
  bool grouped_batched_ok_ = true;  // cleared if cuBLASLt refuses the strided batch

  bool timing_ = false;
  std::vector<CudaEvent> events_;                  // pairs: 2i start, 2i+1 end
  std::vector<std::pair<OpKind, int>> timed_ops_;  // (kind, pair index)
  CudaEvent mark_start_, mark_end_;                // for Mark / SinceMark
};

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
  ASSIGN_OR_RETURN(b->stream_, CudaStream::Create());
  ASSIGN_OR_RETURN(b->lt_, CublasLtHandle::Create());
  b->gemm_ = std::make_unique<CublasLtGemm>(b->lt_.get());
  ASSIGN_OR_RETURN(b->gemm_workspace_, DeviceBuffer::Allocate(kGemmWorkspaceBytes));
  LOG_VERBOSE << "cuda backend created on " << b->name_;
  return b;
}

CudaBackendImpl::~CudaBackendImpl() {
  // Queued work may still use buffers owned by members: drain first. An error
  // here was already reported by the op that caused it.
  if (stream_.get()) {
    const cudaError_t e = cudaStreamSynchronize(stream_.get());
    if (e != cudaSuccess) {
      LOG_ERROR << "cuda backend teardown: " << cudaGetErrorString(e);
    }
  }
  LOG_VERBOSE << "cuda backend destroyed on " << name_;
}

absl::StatusOr<void*> CudaBackendImpl::Scratch(size_t bytes) {
  if (bytes <= scratch_.bytes()) return scratch_.data();
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream()));
  scratch_.Reset();
  const size_t grown = std::max(bytes, scratch_.bytes() + scratch_.bytes() / 2);
  ASSIGN_OR_RETURN(scratch_, DeviceBuffer::Allocate((grown + 255) & ~size_t{255}));
  return scratch_.data();
}

absl::Status CudaBackendImpl::Gemm(const GemmProblem& p, const void* x, const void* w, void* y) {
  return gemm_->Run(p, x, w, y, gemm_workspace_.data(), gemm_workspace_.bytes(), stream());
}

absl::StatusOr<int> CudaBackendImpl::MaxPosition(const StepMeta& m) {
  int max_pos = 0;
  if (m.host_seq_begin && m.host_seq_start_pos) {
    for (int s = 0; s < m.num_seqs; ++s) {
      const int len = m.host_seq_begin[s + 1] - m.host_seq_begin[s];
      if (len > 0) max_pos = std::max(max_pos, m.host_seq_start_pos[s] + len - 1);
    }
    return max_pos;
  }
  // No host copies: read the positions back (a sync; the model normally
  // provides them).
  std::vector<int32_t> pos(m.num_tokens);
  RETURN_IF_ERROR(Download(pos.data(), m.token_pos.data, pos.size() * sizeof(int32_t)));
  for (int p : pos) max_pos = std::max(max_pos, p);
  return max_pos;
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
  CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeThreadLocal));
  return absl::OkStatus();
}

absl::StatusOr<double> CudaBackendImpl::EndCaptureAndTime(int replays) {
  cudaGraph_t raw = nullptr;
  CUDA_RETURN_IF_ERROR(cudaStreamEndCapture(stream(), &raw));
  CudaGraph graph(raw);
  ASSIGN_OR_RETURN(CudaGraphExec exec, CudaGraphExec::Instantiate(graph));
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
  LOG_VERBOSE << name_ << ": allocated " << ptr << " (" << bytes << " bytes)";
  return Buffer(this, ptr, bytes);
}

void CudaBackendImpl::Free(void* ptr) {
  if (!ptr) return;
  CUDA_CHECK_OR_ABORT(cudaSetDevice(device_));
  // cudaFree waits for queued work on the device, so in-flight ops never see
  // their memory disappear.
  CUDA_CHECK_OR_ABORT(cudaFree(ptr));
  LOG_VERBOSE << name_ << ": freed " << ptr;
}

absl::Status CudaBackendImpl::Upload(void* dst, const void* src, size_t bytes) {
  RETURN_IF_ERROR(Activate());
  if (bytes == 0) return absl::OkStatus();
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
  return absl::OkStatus();
}

absl::Status CudaBackendImpl::Download(void* dst, const void* src, size_t bytes) {
  RETURN_IF_ERROR(Activate());
  if (bytes > 0)
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream()));
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
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream()));
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

// ---- dense ops ------------------------------------------------------------------

absl::Status CudaBackendImpl::Embed(const Tensor& ids, const Tensor& table, Tensor out) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectType("Embed", "ids", ids, DType::kI32));
  RETURN_IF_ERROR(ExpectType("Embed", "out", out, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank("Embed", "table", table, 2));
  RETURN_IF_ERROR(ExpectRank("Embed", "out", out, 3));
  cuda::EmbedParams p;
  p.ids = ids.as<int32_t>();
  p.table = table.data;
  ASSIGN_OR_RETURN(p.table_type, ElemTypeOf("Embed", table.dtype));
  p.out = out.as<bf16>();
  p.vocab = table.dim(0);
  p.tokens = static_cast<int>(ids.numel());
  p.streams = static_cast<int>(out.dim(1));
  p.dim = static_cast<int>(table.dim(1));
  if (out.dim(0) != p.tokens || out.dim(2) != p.dim)
    return Invalid("Embed", absl::StrCat("out ", out.ShapeString(), " does not match ids ",
                                         ids.ShapeString(), " and table ", table.ShapeString()));
  RETURN_IF_ERROR(KernelCheck("Embed", cuda::Validate(p)));
  return LaunchStatus("Embed", cuda::LaunchEmbed(p, stream()));
}

absl::Status CudaBackendImpl::Linear(const Tensor& x, const Tensor& w, Tensor y) {
  OpScope scope(this, OpKind::kMatmul);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectType("Linear", "x", x, DType::kBF16));
  RETURN_IF_ERROR(ExpectType("Linear", "w", w, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank("Linear", "w", w, 2));
  if (y.dtype != DType::kBF16 && y.dtype != DType::kF32)
    return Invalid("Linear", "y must be BF16 or F32");
  const int64_t n = w.dim(0), k = w.dim(1);
  if (x.rank < 1 || x.dim(x.rank - 1) != k)
    return Invalid("Linear", absl::StrCat("x ", x.ShapeString(), " does not end in w's ", k));
  const int64_t rows = x.numel() / k;
  RETURN_IF_ERROR(ExpectNumel("Linear", "y", y, rows * n));
  GemmProblem p;
  p.rows = static_cast<int>(rows);
  p.n = static_cast<int>(n);
  p.k = static_cast<int>(k);
  p.ldx = k;
  p.ldw = k;
  p.ldy = n;
  p.out_f32 = y.dtype == DType::kF32;
  return Gemm(p, x.data, w.data, y.data);
}

absl::Status CudaBackendImpl::GroupedLinear(const Tensor& x, const Tensor& w, int groups,
                                            Tensor y) {
  OpScope scope(this, OpKind::kMatmul);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectType("GroupedLinear", "x", x, DType::kBF16));
  RETURN_IF_ERROR(ExpectType("GroupedLinear", "w", w, DType::kBF16));
  RETURN_IF_ERROR(ExpectType("GroupedLinear", "y", y, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank("GroupedLinear", "w", w, 2));
  if (groups < 1 || w.dim(0) % groups != 0)
    return Invalid("GroupedLinear",
                   absl::StrCat("w rows ", w.dim(0), " not divisible by groups ", groups));
  const int64_t kg = w.dim(1), ng = w.dim(0) / groups;
  if (x.numel() % (groups * kg) != 0)
    return Invalid("GroupedLinear",
                   absl::StrCat("x ", x.ShapeString(), " is not [R, ", groups * kg, "]"));
  const int64_t rows = x.numel() / (groups * kg);
  RETURN_IF_ERROR(ExpectNumel("GroupedLinear", "y", y, rows * groups * ng));
  GemmProblem p;
  p.rows = static_cast<int>(rows);
  p.n = static_cast<int>(ng);
  p.k = static_cast<int>(kg);
  p.ldx = groups * kg;
  p.ldw = kg;
  p.ldy = groups * ng;
  if (grouped_batched_ok_) {
    GemmProblem b = p;
    b.batch = groups;
    b.batch_stride_x = kg;
    b.batch_stride_w = ng * kg;
    b.batch_stride_y = ng;
    const absl::Status s = Gemm(b, x.data, w.data, y.data);
    if (s.ok()) return s;
    LOG_WARN << "cuda GroupedLinear: strided batch refused (" << s.message()
             << "); using one product per group";
    grouped_batched_ok_ = false;
  }
  for (int g = 0; g < groups; ++g) {
    RETURN_IF_ERROR(
        Gemm(p, x.as<bf16>() + g * kg, w.as<bf16>() + g * ng * kg, y.as<bf16>() + g * ng));
  }
  return absl::OkStatus();
}

absl::Status CudaBackendImpl::RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor y) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectType("RmsNorm", "x", x, DType::kBF16));
  RETURN_IF_ERROR(ExpectType("RmsNorm", "y", y, DType::kBF16));
  if (x.rank < 1) return Invalid("RmsNorm", "x has rank 0");
  const int64_t cols = x.dim(x.rank - 1);
  RETURN_IF_ERROR(ExpectNumel("RmsNorm", "y", y, x.numel()));
  if (!weight.empty()) {
    RETURN_IF_ERROR(ExpectType("RmsNorm", "weight", weight, DType::kF32));
    RETURN_IF_ERROR(ExpectNumel("RmsNorm", "weight", weight, cols));
  }
  cuda::RmsNormParams p;
  p.x = x.as<bf16>();
  p.weight = weight.empty() ? nullptr : weight.as<float>();
  p.y = y.as<bf16>();
  p.rows = static_cast<int>(x.numel() / cols);
  p.cols = static_cast<int>(cols);
  p.eps = eps;
  RETURN_IF_ERROR(KernelCheck("RmsNorm", cuda::Validate(p)));
  return LaunchStatus("RmsNorm", cuda::LaunchRmsNorm(p, stream()));
}

absl::Status CudaBackendImpl::Rope(Tensor x, const Tensor& pos, const Tensor& inv_freq,
                                   int rope_dim, bool inverse) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectType("Rope", "x", x, DType::kBF16));
  RETURN_IF_ERROR(ExpectType("Rope", "pos", pos, DType::kI32));
  RETURN_IF_ERROR(ExpectType("Rope", "inv_freq", inv_freq, DType::kF32));
  if (x.rank != 2 && x.rank != 3)
    return Invalid("Rope", "x must be [T, heads, width] or [T, width]");
  cuda::RopeParams p;
  p.x = x.as<bf16>();
  p.pos = pos.as<int32_t>();
  p.inv_freq = inv_freq.as<float>();
  p.tokens = static_cast<int>(x.dim(0));
  p.heads = x.rank == 3 ? static_cast<int>(x.dim(1)) : 1;
  p.width = static_cast<int>(x.dim(x.rank - 1));
  p.rope_dim = rope_dim;
  p.inverse = inverse;
  RETURN_IF_ERROR(ExpectNumel("Rope", "pos", pos, p.tokens));
  if (inv_freq.numel() < rope_dim / 2) return Invalid("Rope", "inv_freq shorter than rope_dim/2");
  RETURN_IF_ERROR(KernelCheck("Rope", cuda::Validate(p)));
  return LaunchStatus("Rope", cuda::LaunchRope(p, stream()));
}

absl::Status CudaBackendImpl::Add(const Tensor& a, const Tensor& b, Tensor out) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectType("Add", "a", a, DType::kBF16));
  RETURN_IF_ERROR(ExpectType("Add", "b", b, DType::kBF16));
  RETURN_IF_ERROR(ExpectType("Add", "out", out, DType::kBF16));
  RETURN_IF_ERROR(ExpectNumel("Add", "b", b, a.numel()));
  RETURN_IF_ERROR(ExpectNumel("Add", "out", out, a.numel()));
  return LaunchStatus(
      "Add", cuda::LaunchAdd(a.as<bf16>(), b.as<bf16>(), out.as<bf16>(), a.numel(), stream()));
}

absl::Status CudaBackendImpl::Scale(const Tensor& x, float alpha, Tensor out) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  if (x.empty() || out.empty()) return Invalid("Scale", "x or out is empty");
  if (x.dtype != out.dtype || (x.dtype != DType::kBF16 && x.dtype != DType::kF32))
    return Invalid("Scale", "x and out must both be BF16 or both F32");
  RETURN_IF_ERROR(ExpectNumel("Scale", "out", out, x.numel()));
  ASSIGN_OR_RETURN(cuda::ElemType type, ElemTypeOf("Scale", x.dtype));
  return LaunchStatus("Scale",
                      cuda::LaunchScale(x.data, alpha, out.data, type, x.numel(), stream()));
}

absl::Status CudaBackendImpl::SwiGlu(const Tensor& a, const Tensor& b, float limit, Tensor out) {
  OpScope scope(this, OpKind::kMoe);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectType("SwiGlu", "a", a, DType::kBF16));
  RETURN_IF_ERROR(ExpectType("SwiGlu", "b", b, DType::kBF16));
  RETURN_IF_ERROR(ExpectType("SwiGlu", "out", out, DType::kBF16));
  RETURN_IF_ERROR(ExpectNumel("SwiGlu", "b", b, a.numel()));
  RETURN_IF_ERROR(ExpectNumel("SwiGlu", "out", out, a.numel()));
  return LaunchStatus("SwiGlu", cuda::LaunchSwiGlu(a.as<bf16>(), b.as<bf16>(), limit,
                                                   out.as<bf16>(), a.numel(), stream()));
}

absl::Status CudaBackendImpl::GatherRows(const Tensor& x, const Tensor& rows, Tensor out) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectType("GatherRows", "rows", rows, DType::kI32));
  if (x.empty() || out.empty()) return Invalid("GatherRows", "x or out is empty");
  if (x.dtype != out.dtype) return Invalid("GatherRows", "x and out dtypes differ");
  if (DTypeSize(x.dtype) % 2 != 0) return Invalid("GatherRows", "unsupported dtype");
  if (x.rank < 1) return Invalid("GatherRows", "x has rank 0");
  const int64_t num_rows = x.dim(0);
  const int64_t row_elems = num_rows ? x.numel() / num_rows : 0;
  const int64_t n = rows.numel();
  RETURN_IF_ERROR(ExpectNumel("GatherRows", "out", out, n * row_elems));
  return LaunchStatus(
      "GatherRows", cuda::LaunchGatherRows(
                        x.data, num_rows, rows.as<int32_t>(), static_cast<int>(n),
                        row_elems * static_cast<int64_t>(DTypeSize(x.dtype)), out.data, stream()));
}

absl::Status CudaBackendImpl::Convert(const Tensor& x, Tensor out) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectNumel("Convert", "out", out, x.numel()));
  ASSIGN_OR_RETURN(cuda::ElemType from, ElemTypeOf("Convert", x.dtype));
  ASSIGN_OR_RETURN(cuda::ElemType to, ElemTypeOf("Convert", out.dtype));
  if ((from == cuda::ElemType::kI32) != (to == cuda::ElemType::kI32))
    return Invalid("Convert", "between integer and float");
  return LaunchStatus("Convert",
                      cuda::LaunchConvert(x.data, from, out.data, to, x.numel(), stream()));
}

// ---- hyper-connections ---------------------------------------------------------

absl::Status CudaBackendImpl::HcPre(const Tensor& X, const Tensor& fn, const Tensor& base,
                                    const Tensor& scale, int sinkhorn_iters, float hc_eps,
                                    float norm_eps, Tensor x_in, Tensor post, Tensor comb) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectType("HcPre", "X", X, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank("HcPre", "X", X, 3));
  RETURN_IF_ERROR(ExpectType("HcPre", "fn", fn, DType::kF32));
  RETURN_IF_ERROR(ExpectType("HcPre", "base", base, DType::kF32));
  RETURN_IF_ERROR(ExpectType("HcPre", "scale", scale, DType::kF32));
  RETURN_IF_ERROR(ExpectType("HcPre", "x_in", x_in, DType::kBF16));
  RETURN_IF_ERROR(ExpectType("HcPre", "post", post, DType::kF32));
  RETURN_IF_ERROR(ExpectType("HcPre", "comb", comb, DType::kF32));
  cuda::HcPreParams p;
  p.tokens = static_cast<int>(X.dim(0));
  p.n = static_cast<int>(X.dim(1));
  p.dim = static_cast<int>(X.dim(2));
  const int64_t rows = (2 + p.n) * p.n;
  RETURN_IF_ERROR(ExpectNumel("HcPre", "fn", fn, rows * p.n * p.dim));
  RETURN_IF_ERROR(ExpectNumel("HcPre", "base", base, rows));
  RETURN_IF_ERROR(ExpectNumel("HcPre", "scale", scale, 3));
  RETURN_IF_ERROR(ExpectNumel("HcPre", "x_in", x_in, int64_t{p.tokens} * p.dim));
  RETURN_IF_ERROR(ExpectNumel("HcPre", "post", post, int64_t{p.tokens} * p.n));
  RETURN_IF_ERROR(ExpectNumel("HcPre", "comb", comb, int64_t{p.tokens} * p.n * p.n));
  p.X = X.as<bf16>();
  p.fn = fn.as<float>();
  p.base = base.as<float>();
  p.scale = scale.as<float>();
  p.x_in = x_in.as<bf16>();
  p.post = post.as<float>();
  p.comb = comb.as<float>();
  p.sinkhorn_iters = sinkhorn_iters;
  p.hc_eps = hc_eps;
  p.norm_eps = norm_eps;
  RETURN_IF_ERROR(KernelCheck("HcPre", cuda::Validate(p)));
  ASSIGN_OR_RETURN(void* ws, Scratch(cuda::HcPreWorkspaceBytes(p)));
  return LaunchStatus("HcPre", cuda::LaunchHcPre(p, ws, stream()));
}

absl::Status CudaBackendImpl::HcPost(const Tensor& X, const Tensor& y, const Tensor& post,
                                     const Tensor& comb, Tensor Xout) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectType("HcPost", "X", X, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank("HcPost", "X", X, 3));
  RETURN_IF_ERROR(ExpectType("HcPost", "y", y, DType::kBF16));
  RETURN_IF_ERROR(ExpectType("HcPost", "post", post, DType::kF32));
  RETURN_IF_ERROR(ExpectType("HcPost", "comb", comb, DType::kF32));
  RETURN_IF_ERROR(ExpectType("HcPost", "Xout", Xout, DType::kBF16));
  cuda::HcPostParams p;
  p.tokens = static_cast<int>(X.dim(0));
  p.n = static_cast<int>(X.dim(1));
  p.dim = static_cast<int>(X.dim(2));
  RETURN_IF_ERROR(ExpectNumel("HcPost", "y", y, int64_t{p.tokens} * p.dim));
  RETURN_IF_ERROR(ExpectNumel("HcPost", "post", post, int64_t{p.tokens} * p.n));
  RETURN_IF_ERROR(ExpectNumel("HcPost", "comb", comb, int64_t{p.tokens} * p.n * p.n));
  RETURN_IF_ERROR(ExpectNumel("HcPost", "Xout", Xout, X.numel()));
  p.X = X.as<bf16>();
  p.y = y.as<bf16>();
  p.post = post.as<float>();
  p.comb = comb.as<float>();
  p.Xout = Xout.as<bf16>();
  RETURN_IF_ERROR(KernelCheck("HcPost", cuda::Validate(p)));
  return LaunchStatus("HcPost", cuda::LaunchHcPost(p, stream()));
}

absl::Status CudaBackendImpl::HcHead(const Tensor& X, const Tensor& fn, const Tensor& base,
                                     const Tensor& scale, float hc_eps, float norm_eps, Tensor y) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectType("HcHead", "X", X, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank("HcHead", "X", X, 3));
  RETURN_IF_ERROR(ExpectType("HcHead", "fn", fn, DType::kF32));
  RETURN_IF_ERROR(ExpectType("HcHead", "base", base, DType::kF32));
  RETURN_IF_ERROR(ExpectType("HcHead", "scale", scale, DType::kF32));
  RETURN_IF_ERROR(ExpectType("HcHead", "y", y, DType::kBF16));
  cuda::HcHeadParams p;
  p.tokens = static_cast<int>(X.dim(0));
  p.n = static_cast<int>(X.dim(1));
  p.dim = static_cast<int>(X.dim(2));
  RETURN_IF_ERROR(ExpectNumel("HcHead", "fn", fn, int64_t{p.n} * p.n * p.dim));
  RETURN_IF_ERROR(ExpectNumel("HcHead", "base", base, p.n));
  if (scale.numel() < 1) return Invalid("HcHead", "scale is empty");
  RETURN_IF_ERROR(ExpectNumel("HcHead", "y", y, int64_t{p.tokens} * p.dim));
  p.X = X.as<bf16>();
  p.fn = fn.as<float>();
  p.base = base.as<float>();
  p.scale = scale.as<float>();
  p.y = y.as<bf16>();
  p.hc_eps = hc_eps;
  p.norm_eps = norm_eps;
  RETURN_IF_ERROR(KernelCheck("HcHead", cuda::Validate(p)));
  ASSIGN_OR_RETURN(void* ws, Scratch(cuda::HcHeadWorkspaceBytes(p)));
  return LaunchStatus("HcHead", cuda::LaunchHcHead(p, ws, stream()));
}

// ---- attention and its state -----------------------------------------------------

absl::Status CudaBackendImpl::CompressorUpdate(const Tensor& c, const Tensor& z,
                                               const CompressorParams& params,
                                               const StepMeta& meta) {
  OpScope scope(this, OpKind::kCompressor);
  RETURN_IF_ERROR(Activate());
  const char* op = "CompressorUpdate";
  RETURN_IF_ERROR(CheckMeta(op, meta));
  cuda::CompressorParams p;
  p.rate = params.rate;
  p.overlap = params.overlap;
  p.width = params.width;
  p.rope_dim = params.rope_dim;
  p.eps = params.eps;
  const int64_t cw = p.cw(), ring_len = p.ring_len();
  RETURN_IF_ERROR(ExpectType(op, "c", c, DType::kBF16));
  RETURN_IF_ERROR(ExpectType(op, "z", z, DType::kBF16));
  RETURN_IF_ERROR(ExpectNumel(op, "c", c, int64_t{meta.num_tokens} * cw));
  RETURN_IF_ERROR(ExpectNumel(op, "z", z, int64_t{meta.num_tokens} * cw));
  RETURN_IF_ERROR(ExpectType(op, "ape", params.ape, DType::kF32));
  RETURN_IF_ERROR(ExpectNumel(op, "ape", params.ape, int64_t{p.rate} * cw));
  RETURN_IF_ERROR(ExpectType(op, "norm_weight", params.norm_weight, DType::kF32));
  RETURN_IF_ERROR(ExpectNumel(op, "norm_weight", params.norm_weight, p.width));
  if (p.rope_dim > 0) RETURN_IF_ERROR(ExpectType(op, "inv_freq", params.inv_freq, DType::kF32));
  RETURN_IF_ERROR(ExpectType(op, "ring", params.ring, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank(op, "ring", params.ring, 3));
  if (params.ring.dim(1) != ring_len || params.ring.dim(2) != 2 * cw)
    return Invalid(op, absl::StrCat("ring ", params.ring.ShapeString(), " is not [slots, ",
                                    ring_len, ", ", 2 * cw, "]"));
  ASSIGN_OR_RETURN(p.entries, PagesView(op, params.entries));
  p.c = c.as<bf16>();
  p.z = z.as<bf16>();
  p.ape = params.ape.as<float>();
  p.norm_weight = params.norm_weight.as<float>();
  p.inv_freq = params.inv_freq.empty() ? nullptr : params.inv_freq.as<float>();
  p.ring = params.ring.as<bf16>();
  p.meta = MetaView(meta);
  RETURN_IF_ERROR(KernelCheck(op, cuda::Validate(p)));
  return LaunchStatus(op, cuda::LaunchCompressorUpdate(p, stream()));
}

absl::Status CudaBackendImpl::IndexerTopK(const Tensor& q, const Tensor& weights,
                                          const EntryPages& keys, int rate, float softmax_scale,
                                          const StepMeta& meta, Tensor selected) {
  OpScope scope(this, OpKind::kIndexer);
  RETURN_IF_ERROR(Activate());
  const char* op = "IndexerTopK";
  RETURN_IF_ERROR(CheckMeta(op, meta));
  RETURN_IF_ERROR(ExpectType(op, "q", q, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank(op, "q", q, 3));
  RETURN_IF_ERROR(ExpectType(op, "weights", weights, DType::kF32));
  RETURN_IF_ERROR(ExpectType(op, "selected", selected, DType::kI32));
  RETURN_IF_ERROR(ExpectRank(op, "selected", selected, 2));
  cuda::IndexerTopKParams p;
  p.tokens = meta.num_tokens;
  p.heads = static_cast<int>(q.dim(1));
  p.head_dim = static_cast<int>(q.dim(2));
  p.k = static_cast<int>(selected.dim(1));
  if (q.dim(0) != p.tokens || selected.dim(0) != p.tokens)
    return Invalid(op, "q and selected must have num_tokens rows");
  RETURN_IF_ERROR(ExpectNumel(op, "weights", weights, int64_t{p.tokens} * p.heads));
  if (rate < 1) return Invalid(op, "rate must be positive");
  ASSIGN_OR_RETURN(p.keys, PagesView(op, keys));
  p.q = q.as<bf16>();
  p.weights = weights.as<float>();
  p.token_pos = meta.token_pos.as<int32_t>();
  p.token_seq = meta.token_seq.as<int32_t>();
  p.seq_slot = meta.seq_slot.as<int32_t>();
  p.selected = selected.as<int32_t>();
  p.rate = rate;
  p.softmax_scale = softmax_scale;
  ASSIGN_OR_RETURN(const int max_pos, MaxPosition(meta));
  p.max_entries = std::min<int64_t>((max_pos + 1) / rate, keys.table.dim(1) * keys.page_size);
  RETURN_IF_ERROR(KernelCheck(op, cuda::Validate(p)));
  ASSIGN_OR_RETURN(void* ws, Scratch(cuda::IndexerTopKWorkspaceBytes(p)));
  return LaunchStatus(op, cuda::LaunchIndexerTopK(p, ws, stream()));
}

absl::Status CudaBackendImpl::Attention(const Tensor& q, const Tensor& kv,
                                        const AttentionParams& params, const StepMeta& meta,
                                        Tensor out) {
  OpScope scope(this, OpKind::kAttention);
  RETURN_IF_ERROR(Activate());
  const char* op = "Attention";
  RETURN_IF_ERROR(CheckMeta(op, meta));
  RETURN_IF_ERROR(ExpectType(op, "q", q, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank(op, "q", q, 3));
  RETURN_IF_ERROR(ExpectType(op, "kv", kv, DType::kBF16));
  RETURN_IF_ERROR(ExpectType(op, "out", out, DType::kBF16));
  RETURN_IF_ERROR(ExpectType(op, "sinks", params.sinks, DType::kF32));
  RETURN_IF_ERROR(ExpectType(op, "window_ring", params.window_ring, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank(op, "window_ring", params.window_ring, 3));
  cuda::AttentionParams p;
  p.tokens = meta.num_tokens;
  p.heads = static_cast<int>(q.dim(1));
  p.head_dim = static_cast<int>(q.dim(2));
  p.window = params.window;
  p.scale = params.scale;
  if (q.dim(0) != p.tokens) return Invalid(op, "q must have num_tokens rows");
  RETURN_IF_ERROR(ExpectNumel(op, "kv", kv, int64_t{p.tokens} * p.head_dim));
  RETURN_IF_ERROR(ExpectNumel(op, "out", out, q.numel()));
  RETURN_IF_ERROR(ExpectNumel(op, "sinks", params.sinks, p.heads));
  if (params.window_ring.dim(1) != p.window || params.window_ring.dim(2) != p.head_dim)
    return Invalid(op, absl::StrCat("window_ring ", params.window_ring.ShapeString(),
                                    " is not [slots, ", p.window, ", ", p.head_dim, "]"));
  if (!params.entries.pool.empty()) {
    ASSIGN_OR_RETURN(p.entries, PagesView(op, params.entries));
    p.rate = params.rate;
    if (!params.selected.empty()) {
      RETURN_IF_ERROR(ExpectType(op, "selected", params.selected, DType::kI32));
      RETURN_IF_ERROR(ExpectRank(op, "selected", params.selected, 2));
      if (params.selected.dim(0) != p.tokens) return Invalid(op, "selected must have T rows");
      p.selected = params.selected.as<int32_t>();
      p.selected_k = static_cast<int>(params.selected.dim(1));
    }
  }
  p.q = q.as<bf16>();
  p.kv = kv.as<bf16>();
  p.window_ring = params.window_ring.as<bf16>();
  p.sinks = params.sinks.as<float>();
  p.out = out.as<bf16>();
  p.meta = MetaView(meta);
  ASSIGN_OR_RETURN(p.max_position, MaxPosition(meta));
  RETURN_IF_ERROR(KernelCheck(op, cuda::Validate(p)));
  ASSIGN_OR_RETURN(void* ws, Scratch(cuda::AttentionWorkspaceBytes(p)));
  return LaunchStatus(op, cuda::LaunchAttention(p, ws, stream()));
}

absl::Status CudaBackendImpl::WindowUpdate(const Tensor& kv, Tensor ring, const StepMeta& meta) {
  OpScope scope(this, OpKind::kAttention);
  RETURN_IF_ERROR(Activate());
  const char* op = "WindowUpdate";
  RETURN_IF_ERROR(CheckMeta(op, meta));
  RETURN_IF_ERROR(ExpectType(op, "kv", kv, DType::kBF16));
  RETURN_IF_ERROR(ExpectType(op, "ring", ring, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank(op, "ring", ring, 3));
  cuda::WindowUpdateParams p;
  p.head_dim = static_cast<int>(ring.dim(2));
  p.window = static_cast<int>(ring.dim(1));
  RETURN_IF_ERROR(ExpectNumel(op, "kv", kv, int64_t{meta.num_tokens} * p.head_dim));
  p.kv = kv.as<bf16>();
  p.ring = ring.as<bf16>();
  p.meta = MetaView(meta);
  RETURN_IF_ERROR(KernelCheck(op, cuda::Validate(p)));
  return LaunchStatus(op, cuda::LaunchWindowUpdate(p, stream()));
}

// ---- MoE -------------------------------------------------------------------------

absl::Status CudaBackendImpl::Route(const Tensor& logits, const Tensor& bias, const Tensor& tid2eid,
                                    const Tensor& token_ids, float routed_scaling, Tensor idx,
                                    Tensor w) {
  OpScope scope(this, OpKind::kMoe);
  RETURN_IF_ERROR(Activate());
  const char* op = "Route";
  RETURN_IF_ERROR(ExpectType(op, "logits", logits, DType::kF32));
  RETURN_IF_ERROR(ExpectRank(op, "logits", logits, 2));
  RETURN_IF_ERROR(ExpectType(op, "idx", idx, DType::kI32));
  RETURN_IF_ERROR(ExpectType(op, "w", w, DType::kF32));
  cuda::RouteParams p;
  p.tokens = static_cast<int>(logits.dim(0));
  p.experts = static_cast<int>(logits.dim(1));
  p.k = idx.rank == 2 ? static_cast<int>(idx.dim(1)) : 0;
  RETURN_IF_ERROR(ExpectNumel(op, "idx", idx, int64_t{p.tokens} * p.k));
  RETURN_IF_ERROR(ExpectNumel(op, "w", w, int64_t{p.tokens} * p.k));
  if (!tid2eid.empty()) {
    RETURN_IF_ERROR(ExpectType(op, "tid2eid", tid2eid, DType::kI32));
    RETURN_IF_ERROR(ExpectRank(op, "tid2eid", tid2eid, 2));
    if (tid2eid.dim(1) != p.k) return Invalid(op, "tid2eid rows must hold k experts");
    RETURN_IF_ERROR(ExpectType(op, "token_ids", token_ids, DType::kI32));
    RETURN_IF_ERROR(ExpectNumel(op, "token_ids", token_ids, p.tokens));
    p.tid2eid = tid2eid.as<int32_t>();
    p.token_ids = token_ids.as<int32_t>();
    p.vocab = tid2eid.dim(0);
  } else if (!bias.empty()) {
    RETURN_IF_ERROR(ExpectType(op, "bias", bias, DType::kF32));
    RETURN_IF_ERROR(ExpectNumel(op, "bias", bias, p.experts));
    p.bias = bias.as<float>();
  }
  p.logits = logits.as<float>();
  p.idx = idx.as<int32_t>();
  p.w = w.as<float>();
  p.routed_scaling = routed_scaling;
  RETURN_IF_ERROR(KernelCheck(op, cuda::Validate(p)));
  return LaunchStatus(op, cuda::LaunchRoute(p, stream()));
}

absl::Status CudaBackendImpl::MoeExperts(const Tensor& x, const Tensor& idx, const Tensor& w,
                                         const ExpertWeights& experts, float swiglu_limit,
                                         Tensor out) {
  OpScope scope(this, OpKind::kMoe);
  RETURN_IF_ERROR(Activate());
  const char* op = "MoeExperts";
  RETURN_IF_ERROR(ExpectType(op, "x", x, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank(op, "x", x, 2));
  RETURN_IF_ERROR(ExpectType(op, "idx", idx, DType::kI32));
  RETURN_IF_ERROR(ExpectType(op, "w", w, DType::kF32));
  RETURN_IF_ERROR(ExpectType(op, "out", out, DType::kBF16));
  RETURN_IF_ERROR(ExpectType(op, "experts.w1", experts.w1, DType::kBF16));
  RETURN_IF_ERROR(ExpectType(op, "experts.w2", experts.w2, DType::kBF16));
  RETURN_IF_ERROR(ExpectType(op, "experts.w3", experts.w3, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank(op, "experts.w1", experts.w1, 3));
  cuda::MoeParams p;
  p.tokens = static_cast<int>(x.dim(0));
  p.dim = static_cast<int>(x.dim(1));
  p.k = p.tokens ? static_cast<int>(idx.numel() / p.tokens) : 1;
  p.experts = static_cast<int>(experts.w1.dim(0));
  p.inter = static_cast<int>(experts.w1.dim(1));
  if (experts.w1.dim(2) != p.dim) return Invalid(op, "experts.w1 is not [E, F, D]");
  RETURN_IF_ERROR(ExpectNumel(op, "experts.w3", experts.w3, experts.w1.numel()));
  RETURN_IF_ERROR(ExpectNumel(op, "experts.w2", experts.w2, experts.w1.numel()));
  if (experts.w2.rank == 3 && (experts.w2.dim(1) != p.dim || experts.w2.dim(2) != p.inter))
    return Invalid(op, "experts.w2 is not [E, D, F]");
  RETURN_IF_ERROR(ExpectNumel(op, "idx", idx, int64_t{p.tokens} * p.k));
  RETURN_IF_ERROR(ExpectNumel(op, "w", w, int64_t{p.tokens} * p.k));
  RETURN_IF_ERROR(ExpectNumel(op, "out", out, x.numel()));
  p.x = x.as<bf16>();
  p.idx = idx.as<int32_t>();
  p.w = w.as<float>();
  p.w1 = experts.w1.as<bf16>();
  p.w2 = experts.w2.as<bf16>();
  p.w3 = experts.w3.as<bf16>();
  p.out = out.as<bf16>();
  p.swiglu_limit = swiglu_limit;
  if (p.tokens == 0) return absl::OkStatus();
  RETURN_IF_ERROR(KernelCheck(op, cuda::Validate(p)));
  ASSIGN_OR_RETURN(void* ws, Scratch(cuda::MoeWorkspaceBytes(p)));
  return LaunchStatus(op, cuda::LaunchMoe(p, ws, stream()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(int device) {
  ASSIGN_OR_RETURN(std::unique_ptr<CudaBackendImpl> b, CudaBackendImpl::Create(device));
  return std::unique_ptr<Backend>(std::move(b));
}

OpTimer* CudaOpTimer(Backend* backend) { return dynamic_cast<CudaBackendImpl*>(backend); }

}  // namespace moegraph
