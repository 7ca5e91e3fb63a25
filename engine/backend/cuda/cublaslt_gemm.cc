// cuBLASLt products with a per-problem algorithm cache (see cublaslt_gemm.h).
//
// Row-major Y = X W^T is column-major Y^T = W X^T: cuBLASLt's A is W (stored
// k x n column-major, transposed), B is X (k x rows column-major), C/D is Y^T
// (n x rows column-major).
#include "engine/backend/cuda/cublaslt_gemm.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/cuda_resources.h"
#include "engine/common/logging.h"
#include "engine/common/status_macros.h"

namespace moegraph {

struct CublasLtGemm::Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
  // Heuristic candidates not yet timed; cleared once the fastest is chosen.
  std::vector<cublasLtMatmulAlgo_t> candidates;
  ~Plan() {
    if (c) CUBLAS_CHECK_OR_ABORT(cublasLtMatrixLayoutDestroy(c));
    if (b) CUBLAS_CHECK_OR_ABORT(cublasLtMatrixLayoutDestroy(b));
    if (a) CUBLAS_CHECK_OR_ABORT(cublasLtMatrixLayoutDestroy(a));
    if (op) CUBLAS_CHECK_OR_ABORT(cublasLtMatmulDescDestroy(op));
  }
};

CublasLtGemm::CublasLtGemm(cublasLtHandle_t handle) : handle_(handle) {
  const char* env = std::getenv("MOEGRAPH_CUBLASLT_AUTOTUNE");
  autotune_ = env == nullptr || std::string(env) != "0";
}

CublasLtGemm::~CublasLtGemm() {
  LOG_VERBOSE << "cublasLt gemm cache destroyed (" << plans_.size() << " plans)";
}

namespace {

constexpr int kCandidates = 8;

int PointerAlignment(const void* p) {
  const auto v = reinterpret_cast<uintptr_t>(p);
  int a = 256;
  while (a > 1 && v % a != 0) a /= 2;
  return a;
}

absl::Status SetBatch(cublasLtMatrixLayout_t layout, int batch, int64_t stride) {
  if (batch <= 1) return absl::OkStatus();
  CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutSetAttribute(
      layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof(batch)));
  CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutSetAttribute(
      layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CublasLtGemm::Plan*> CublasLtGemm::GetPlan(const GemmProblem& p, int alignment,
                                                          size_t workspace_bytes,
                                                          const GemmScales& scales) {
  const Key key{p.rows,
                p.n,
                p.k,
                p.ldx,
                p.ldw,
                p.ldy,
                p.batch,
                p.batch_stride_x,
                p.batch_stride_w,
                p.batch_stride_y,
                p.out_f32,
                p.fp8_block_scaled,
                alignment,
                workspace_bytes};
  if (auto it = plans_.find(key); it != plans_.end()) return it->second.get();

  auto plan = std::make_unique<Plan>();
  CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&plan->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans = CUBLAS_OP_T, no_trans = CUBLAS_OP_N;
  CUBLAS_RETURN_IF_ERROR(
      cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSA, &trans, sizeof(trans)));
  CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSB,
                                                        &no_trans, sizeof(no_trans)));
  if (p.fp8_block_scaled) {
    if (p.batch != 1) return absl::InvalidArgumentError("cublasLt: fp8 block-scaled batch != 1");
    // W is cuBLASLt's A (128x128 blocks), X its B (1x128 groups along K).
    const cublasLtMatmulMatrixScale_t a_mode = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F,
                                      b_mode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
    CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan->op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &a_mode, sizeof(a_mode)));
    CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan->op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &b_mode, sizeof(b_mode)));
    // The heuristic refuses block-scaled modes (INVALID_VALUE) while the
    // scale pointers are unset (measured on the H200, cuBLASLt 13.1).
    RETURN_IF_ERROR(SetScales(*plan, scales));
  }
  const cudaDataType_t in_type = p.fp8_block_scaled ? CUDA_R_8F_E4M3 : CUDA_R_16BF;
  CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->a, in_type, p.k, p.n, p.ldw));
  CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->b, in_type, p.k, p.rows, p.ldx));
  CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->c, p.out_f32 ? CUDA_R_32F : CUDA_R_16BF,
                                                    p.n, p.rows, p.ldy));
  if (auto s = SetBatch(plan->a, p.batch, p.batch_stride_w); !s.ok()) return s;
  if (auto s = SetBatch(plan->b, p.batch, p.batch_stride_x); !s.ok()) return s;
  if (auto s = SetBatch(plan->c, p.batch, p.batch_stride_y); !s.ok()) return s;

  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref));
  const uint32_t align = static_cast<uint32_t>(alignment);
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes, sizeof(workspace_bytes));
  for (auto attr :
       {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulPreferenceSetAttribute(pref, attr, &align, sizeof(align));
  }
  cublasLtMatmulHeuristicResult_t results[kCandidates]{};
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulAlgoGetHeuristic(handle_, plan->op, plan->a, plan->b, plan->c, plan->c, pref,
                                        kCandidates, results, &found);
  CUBLAS_CHECK_OR_ABORT(cublasLtMatmulPreferenceDestroy(pref));
  CUBLAS_RETURN_IF_ERROR(st);
  if (found == 0) {
    return absl::UnimplementedError(absl::StrFormat(
        "cuBLASLt has no algorithm for rows=%d n=%d k=%d batch=%d out_f32=%d fp8=%d alignment=%d",
        p.rows, p.n, p.k, p.batch, p.out_f32, p.fp8_block_scaled, alignment));
  }
  plan->algo = results[0].algo;
  plan->workspace = results[0].workspaceSize;
  if (autotune_) {
    for (int i = 0; i < found; ++i) {
      if (results[i].state == CUBLAS_STATUS_SUCCESS) plan->candidates.push_back(results[i].algo);
    }
    if (plan->candidates.size() < 2) plan->candidates.clear();
  }
  LOG_VERBOSE << "cublasLt plan rows=" << p.rows << " n=" << p.n << " k=" << p.k
              << " batch=" << p.batch << " out_f32=" << p.out_f32 << " fp8=" << p.fp8_block_scaled
              << " workspace=" << plan->workspace;
  Plan* raw = plan.get();
  plans_.emplace(key, std::move(plan));
  return raw;
}

// Times each heuristic candidate on the real operands (two warm-up and
// five timed runs each) and keeps the fastest: the heuristic's first choice
// for the skinny decode products is often not the quickest.
absl::Status CublasLtGemm::Tune(Plan& plan, const void* x, const void* w, void* y, void* workspace,
                                size_t workspace_bytes, cudaStream_t stream) {
  ASSIGN_OR_RETURN(CudaEvent start, CudaEvent::Create(/*timing=*/true));
  ASSIGN_OR_RETURN(CudaEvent stop, CudaEvent::Create(/*timing=*/true));
  const float alpha = 1.0f, beta = 0.0f;
  float best_ms = 0.0f;
  size_t best = 0;
  for (size_t i = 0; i < plan.candidates.size(); ++i) {
    const cublasLtMatmulAlgo_t& algo = plan.candidates[i];
    bool ok = true;
    for (int rep = 0; rep < 7 && ok; ++rep) {
      if (rep == 2) CUDA_RETURN_IF_ERROR(cudaEventRecord(start.get(), stream));
      ok = cublasLtMatmul(handle_, plan.op, &alpha, w, plan.a, x, plan.b, &beta, y, plan.c, y,
                          plan.c, &algo, workspace, workspace_bytes,
                          stream) == CUBLAS_STATUS_SUCCESS;
    }
    if (!ok) continue;
    CUDA_RETURN_IF_ERROR(cudaEventRecord(stop.get(), stream));
    CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop.get()));
    float ms = 0.0f;
    CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start.get(), stop.get()));
    if (i == 0 || ms < best_ms) {
      best_ms = ms;
      best = i;
    }
  }
  LOG_VERBOSE << "cublasLt autotune: candidate " << best << " of " << plan.candidates.size() << " ("
              << best_ms / 5 * 1e3 << " us)";
  plan.algo = plan.candidates[best];
  plan.candidates.clear();
  return absl::OkStatus();
}

// The scale pointers live in the cached descriptor: set before every use (a
// captured graph keeps the values of its capture).
absl::Status CublasLtGemm::SetScales(Plan& plan, const GemmScales& scales) {
  CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      plan.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &scales.w, sizeof(scales.w)));
  CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      plan.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &scales.x, sizeof(scales.x)));
  return absl::OkStatus();
}

absl::Status CublasLtGemm::Run(const GemmProblem& p, const void* x, const void* w, void* y,
                               void* workspace, size_t workspace_bytes, cudaStream_t stream,
                               const GemmScales& scales) {
  if (p.rows == 0 || p.n == 0 || p.batch == 0) return absl::OkStatus();
  if (p.fp8_block_scaled && (scales.x == nullptr || scales.w == nullptr))
    return absl::InvalidArgumentError("cublasLt: fp8 block-scaled product without scales");
  if (p.fp8_block_scaled && p.rows % kFp8BlockScaledRows != 0)
    return absl::InvalidArgumentError(absl::StrFormat(
        "cublasLt: fp8 block-scaled rows=%d is not a multiple of %d", p.rows, kFp8BlockScaledRows));
  int alignment = PointerAlignment(x);
  for (const void* ptr : {w, static_cast<const void*>(y)})
    alignment = std::min(alignment, PointerAlignment(ptr));
  if (p.batch > 1) {  // later batches start at base + b * stride
    const int64_t out_size = p.out_f32 ? 4 : 2;
    for (int64_t bytes : {2 * p.batch_stride_x, 2 * p.batch_stride_w, out_size * p.batch_stride_y})
      alignment = std::min(alignment, PointerAlignment(reinterpret_cast<const void*>(bytes)));
  }
  auto plan = GetPlan(p, alignment, workspace_bytes, scales);
  if (!plan.ok()) return plan.status();
  if (p.fp8_block_scaled) RETURN_IF_ERROR(SetScales(**plan, scales));
  if (!(*plan)->candidates.empty()) {
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    CUDA_RETURN_IF_ERROR(cudaStreamIsCapturing(stream, &capturing));
    if (capturing == cudaStreamCaptureStatusNone) {
      RETURN_IF_ERROR(Tune(**plan, x, w, y, workspace, workspace_bytes, stream));
    }
  }
  const float alpha = 1.0f, beta = 0.0f;
  CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(handle_, (*plan)->op, &alpha, w, (*plan)->a, x, (*plan)->b,
                                        &beta, y, (*plan)->c, y, (*plan)->c, &(*plan)->algo,
                                        workspace, workspace_bytes, stream));
  return absl::OkStatus();
}

}  // namespace moegraph
