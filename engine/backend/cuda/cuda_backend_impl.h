// The CUDA backend's implementation class and the operand checks its op
// families share (private to engine/backend/cuda/: cuda_backend.cc holds
// creation, memory, staging, fences and graphs; cuda_dense_ops.cc,
// cuda_attention_ops.cc and cuda_moe_ops.cc the ops by family).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <array>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/backend/backend.h"
#include "engine/backend/cuda/cublaslt_gemm.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/cuda_resources.h"
#include "engine/backend/op_timer.h"
#include "engine/backend/operand_check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/moe.h"
#include "kernels/cuda/step_meta.h"

namespace moegraph::cuda_impl {

using bf16 = __nv_bfloat16;

// ---- operand checks (InvalidArgument naming the op and operand) -------------
// (engine/backend/operand_check.h: the same checks and messages as the CPU
// backend's; ExpectNumel and ExpectRank come from there as they are.)
inline absl::Status Invalid(const char* op, const std::string& what) {
  return OperandError(op, what);
}
inline absl::Status ExpectType(const char* op, const char* name, const Tensor& t, DType want) {
  return ExpectDType(op, name, t, {want});
}
// A failed launch -> Internal naming the op.
absl::Status LaunchStatus(const char* op, cudaError_t e);
// Kernel-side validation message (null = fine) -> InvalidArgument.
absl::Status KernelCheck(const char* op, const char* msg);
cuda::StepMetaView MetaView(const StepMeta& m);
absl::Status CheckMeta(const char* op, const StepMeta& m);
absl::StatusOr<cuda::EntryPagesView> PagesView(const char* op, const EntryPages& e);
absl::StatusOr<cuda::ElemType> ElemTypeOf(const char* op, DType t);
// The step's largest position: max_position, raised by the host copies of
// the batch when present (op tests build metas without max_position).
absl::StatusOr<int> MaxPositionOf(const char* op, const StepMeta& m);

// ---- the backend ------------------------------------------------------------
class CudaBackendImpl final : public Backend, public OpTimer {
 public:
  static absl::StatusOr<std::unique_ptr<CudaBackendImpl>> Create(int device);
  void set_w8a8_min_rows(int rows) { w8a8_min_rows_ = rows; }
  // The stream every op runs on, for transports that enqueue their own
  // work in op order (nccl_exchange.cc).
  cudaStream_t op_stream() const { return stream_.get(); }
  int device() const { return device_; }
  ~CudaBackendImpl() override;

  std::string name() const override { return name_; }
  std::string id() const override { return absl::StrCat("cuda:", device_); }
  DType activation_dtype() const override { return DType::kBF16; }

  absl::StatusOr<Buffer> Allocate(size_t bytes) override;
  void Free(void* ptr) override;
  absl::Status Upload(void* dst, const void* src, size_t bytes) override;
  absl::Status Download(void* dst, const void* src, size_t bytes) override;
  absl::Status Fill(Tensor t, float value) override;
  absl::Status Synchronize() override;
  absl::StatusOr<HostMemory> AllocateHost(size_t bytes) override;
  absl::Status DownloadAsync(void* dst, const void* src, size_t bytes) override;
  absl::Status RecordFence(int fence) override;
  absl::Status WaitFence(int fence) override;
  bool supports_graphs() const override { return true; }
  absl::Status BeginGraphCapture() override;
  absl::StatusOr<int> EndGraphCapture() override;
  absl::Status LaunchGraph(int graph) override;
  void FreezeWorkspaces() override { frozen_ = true; }
  bool workspaces_frozen() const override { return frozen_; }
  BackendCounters counters() const override { return counters_; }
  int64_t device_memory_used() const override;
  int64_t device_memory_total() const override;
  absl::StatusOr<Tensor> UploadWeight(const Tensor& host, bool matrix,
                                      std::vector<Buffer>* owner) override;
  absl::StatusOr<Tensor> UploadStacked(const std::vector<Tensor>& host,
                                       std::vector<Buffer>* owner) override;
  absl::StatusOr<Weight> UploadMatrix(const HostWeight& host, std::vector<Buffer>* owner) override;
  absl::StatusOr<Weight> UploadStackedMatrices(const std::vector<HostWeight>& host,
                                               std::vector<Buffer>* owner) override;

  absl::Status Embed(const Tensor& ids, const Tensor& table, Tensor out) override;
  absl::Status Linear(const Tensor& x, const Weight& w, Tensor y) override;
  absl::Status GroupedLinear(const Tensor& x, const Weight& w, int groups, Tensor y) override;
  absl::Status RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor y) override;
  absl::Status Rope(Tensor x, const Tensor& pos, const Tensor& inv_freq, int rope_dim,
                    bool inverse) override;
  absl::Status Add(const Tensor& a, const Tensor& b, Tensor out) override;
  absl::Status Scale(const Tensor& x, float alpha, Tensor out) override;
  absl::Status SwiGlu(const Tensor& a, const Tensor& b, float limit, Tensor out) override;
  absl::Status GatherRows(const Tensor& x, const Tensor& rows, Tensor out) override;
  absl::Status TakeSampledIds(Tensor ids, const Tensor& from, const Tensor& sampled) override;
  absl::Status Convert(const Tensor& x, Tensor out) override;
  absl::Status ScatterPairs(Tensor dst, const Tensor& pairs, const Tensor& count) override;
  absl::Status Sample(const Tensor& logits, const Tensor& params, Tensor ids) override;
  absl::Status HcPre(const Tensor& X, const Tensor& fn, const Tensor& base, const Tensor& scale,
                     int sinkhorn_iters, float hc_eps, float norm_eps, Tensor x_in, Tensor post,
                     Tensor comb) override;
  absl::Status HcPreNorm(const Tensor& X, const Tensor& fn, const Tensor& base, const Tensor& scale,
                         int sinkhorn_iters, float hc_eps, float norm_eps,
                         const Tensor& norm_weight, Tensor x_in, Tensor post, Tensor comb,
                         Tensor h) override;
  // HcPre, fused with the norm when `h` is set (HcPreNorm).
  absl::Status HcPreSite(const char* op, const Tensor& X, const Tensor& fn, const Tensor& base,
                         const Tensor& scale, int sinkhorn_iters, float hc_eps, float norm_eps,
                         const Tensor& norm_weight, Tensor x_in, Tensor post, Tensor comb,
                         Tensor h);
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
  absl::Status MoeExpertPairs(const Tensor& x, const Tensor& experts, const Tensor& counts,
                              int first_expert, const ExpertWeights& local, float swiglu_limit,
                              Tensor out, Tensor pair_dst, Tensor pair_count) override;
  absl::Status MoeWeightedSum(const Tensor& y, const Tensor& idx, const Tensor& w,
                              Tensor out) override;
  // cuda_exchange_ops.cc
  absl::Status ExchangeDispatch(const Tensor& x, const Tensor& idx, const Tensor& owner,
                                const std::vector<ExchangeRegion>& to,
                                Tensor rows_scratch) override;
  absl::Status ExchangeCombine(const Tensor& out, const Tensor& pair_dst, const Tensor& pair_count,
                               const Tensor& src_token, const Tensor& counts,
                               const std::vector<Tensor>& combined) override;
  absl::Status ExchangeMeet(const RankMeeting& m) override;
  // cuda_backend.cc
  absl::Status BeginSide() override;
  absl::Status EndSide() override;
  absl::Status JoinSide() override;
  absl::Status EnablePeerAccess(const Backend& peer) override;

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
      ++b_->counters_.ops;
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

  // The stream ops enqueue on: the main one, or the side one between
  // BeginSide and EndSide (with its own scratch and GEMM workspace, so that
  // the two may run at once).
  cudaStream_t stream() const { return on_side_ ? side_.stream.get() : stream_.get(); }
  absl::Status Activate() {
    CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    return absl::OkStatus();
  }
  // Scratch memory for one op's workspace; valid until the next call. Grows
  // (after a stream sync) until FreezeWorkspaces(), then refuses to.
  absl::StatusOr<void*> Scratch(size_t bytes);
  absl::Status Gemm(const GemmProblem& p, const void* x, const void* w, void* y);
  // y = x W^T for an FP8/FP4 weight (cuda_quant_ops.cc): rows of x and y at
  // strides ldx, ldy; `row0` selects a block of W's rows (grouped products).
  absl::Status QuantGemm(const char* op, const Tensor& x, const Weight& w, int64_t row0,
                         int64_t rows_of_w, int64_t k, int64_t ldx, Tensor y, int64_t y_offset,
                         int64_t ldy);
  // How many leading rows of an FP8 product of `rows` rows run W8A8
  // (activations quantized, cuBLASLt's block-scaled FP8 GEMM) rather than our
  // W8A16 kernel: 0, or a multiple of kFp8BlockScaledRows.
  // The routed experts' operands of MoeExperts and MoeExpertPairs, checked
  // (x act [T, D]): p's formats, weights, sizes and num_sms.
  absl::Status ExpertOperands(const char* op, const Tensor& x, const ExpertWeights& experts,
                              float swiglu_limit, cuda::MoeParams* p) const;
  int64_t W8A8Rows(const Weight& w, int64_t rows, int64_t n, int64_t k) const;
  absl::Status W8A8Gemm(const char* op, const Tensor& x, const Weight& w, int64_t row0,
                        int64_t rows_of_w, int64_t k, int64_t ldx, int64_t rows, Tensor y,
                        int64_t y_offset, int64_t ldy);
  // `groups` > 1: a block-diagonal product in one launch (GroupedLinear): group g
  // takes x's columns [g k, (g + 1) k) and rows_of_w rows of W from row0 + g rows_of_w.
  absl::Status QuantGemmW8A16(const char* op, const Tensor& x, const Weight& w, int64_t row0,
                              int64_t rows_of_w, int64_t k, int64_t ldx, Tensor y, int64_t y_offset,
                              int64_t ldy, int groups = 1);
  // Appends `host` (data, then scales) to `buf` at `offset`, as stored on the device.
  absl::Status UploadQuantized(const HostWeight& host, char* data, char* scale);
  // Ends the stream capture and instantiates what it recorded.
  absl::StatusOr<CudaGraphExec> EndCapture();
  int BeginOp(OpKind kind);
  void EndOp(int index);

  int device_;
  int num_sms_ = 132;
  int w8a8_min_rows_ = 0;  // BackendOptions::w8a8_min_rows
  // (rows, n, k) of FP8 products cuBLASLt has no block-scaled algorithm for.
  absl::flat_hash_set<std::tuple<int64_t, int64_t, int64_t>> w8a8_refused_;
  std::string name_;
  CudaStream stream_;  // declared first: destroyed after everything using it
  CublasLtHandle lt_;
  std::unique_ptr<CublasLtGemm> gemm_;
  DeviceBuffer gemm_workspace_;
  DeviceBuffer scratch_;
  // The side stream (BeginSide), created on first use; off with
  // MOEGRAPH_SIDE_STREAM=0 (everything in order on the main stream).
  struct Side {
    CudaStream stream;
    DeviceBuffer gemm_workspace, scratch;
    CudaEvent fork, join;
  };
  Side side_;
  bool side_enabled_ = true;
  bool on_side_ = false;
  bool side_pending_ = false;  // side work the main stream has not joined
  DeviceBuffer& lane_scratch() { return on_side_ ? side_.scratch : scratch_; }
  DeviceBuffer& lane_gemm_workspace() { return on_side_ ? side_.gemm_workspace : gemm_workspace_; }
  bool grouped_batched_ok_ = true;  // cleared if cuBLASLt refuses the strided batch

  bool frozen_ = false;
  BackendCounters counters_;
  std::array<CudaEvent, kNumFences> fences_;
  std::vector<CudaGraphExec> graphs_;

  bool timing_ = false;
  std::vector<CudaEvent> events_;                  // pairs: 2i start, 2i+1 end
  std::vector<std::pair<OpKind, int>> timed_ops_;  // (kind, pair index)
  CudaEvent mark_start_, mark_end_;                // for Mark / SinceMark
};

}  // namespace moegraph::cuda_impl
