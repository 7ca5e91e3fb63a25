// Matrix products through cuBLASLt: bf16 operands, or e4m3 operands with the
// DeepSeek block scales (W8A8: activations one f32 per 1x128, weights one per
// 128x128), fp32 compute, bf16 or fp32 output. The algorithm of each
// distinct problem (sizes, strides, batch, output type, pointer alignment) is
// chosen once and cached with its descriptors: the first Run outside stream
// capture times cuBLASLt's top heuristic candidates on the real operands and
// keeps the fastest (MOEGRAPH_CUBLASLT_AUTOTUNE=0 keeps the heuristic's first
// choice). The workspace is the caller's, passed to every Run.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace moegraph {

// Y[b][r, :n] = X[b][r, :k] . W[b][:n, :k]^T for r < rows, b < batch; every
// matrix row-major with the given row strides (elements) and batch strides.
struct GemmProblem {
  int rows = 0, n = 0, k = 0;
  int64_t ldx = 0, ldw = 0, ldy = 0;
  int batch = 1;
  int64_t batch_stride_x = 0, batch_stride_w = 0, batch_stride_y = 0;
  bool out_f32 = false;  // Y in fp32 instead of bf16
  // X and W e4m3 (x_scale [ceil(k/128), rows], w_scale [ceil(n/128),
  // ceil(k/128)] with ceil(k/128) a multiple of 4): cuBLASLt's sm_90
  // VEC128_32F x BLK128x128_32F modes. batch must be 1 and rows a multiple
  // of kFp8BlockScaledRows.
  bool fp8_block_scaled = false;
};

// Block-scaled FP8 products need rows (the activation scales' leading
// dimension) in multiples of this: on the H200 (cuBLASLt 13.1) rows 1 and 3
// are refused or computed wrong without an error, 16 and up are exact; 4..15
// were not measured.
inline constexpr int kFp8BlockScaledRows = 16;

// The f32 block scales of a fp8_block_scaled problem (device pointers).
struct GemmScales {
  const float* x = nullptr;
  const float* w = nullptr;
};

class CublasLtGemm {
 public:
  // `handle` is borrowed and must outlive this object.
  explicit CublasLtGemm(cublasLtHandle_t handle);
  ~CublasLtGemm();
  CublasLtGemm(const CublasLtGemm&) = delete;
  CublasLtGemm& operator=(const CublasLtGemm&) = delete;

  // Enqueues the product on `stream`. x, w bf16 (e4m3 with `scales` when
  // problem.fp8_block_scaled); y bf16 or f32. UNIMPLEMENTED when cuBLASLt
  // has no algorithm for the problem (nothing enqueued).
  absl::Status Run(const GemmProblem& problem, const void* x, const void* w, void* y,
                   void* workspace, size_t workspace_bytes, cudaStream_t stream,
                   const GemmScales& scales = {});

  size_t cached_plans() const { return plans_.size(); }

 private:
  struct Plan;
  using Key = std::tuple<int, int, int, int64_t, int64_t, int64_t, int, int64_t, int64_t, int64_t,
                         bool, bool, int, size_t>;
  absl::StatusOr<Plan*> GetPlan(const GemmProblem& p, int alignment, size_t workspace_bytes,
                                const GemmScales& scales);
  absl::Status Tune(Plan& plan, const void* x, const void* w, void* y, void* workspace,
                    size_t workspace_bytes, cudaStream_t stream);
  static absl::Status SetScales(Plan& plan, const GemmScales& scales);

  cublasLtHandle_t handle_;
  bool autotune_ = true;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace moegraph
