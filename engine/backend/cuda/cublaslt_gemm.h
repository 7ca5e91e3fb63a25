// Matrix products through cuBLASLt: bf16 operands, fp32 compute, bf16 or fp32
// output. The algorithm of each distinct problem (sizes, strides, batch,
// output type, pointer alignment) is chosen once and cached with its
// descriptors: the first Run outside stream capture times cuBLASLt's top
// heuristic candidates on the real operands and keeps the fastest
// (MOEGRAPH_CUBLASLT_AUTOTUNE=0 keeps the heuristic's first choice). The
// workspace is the caller's, passed to every Run.
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
};

class CublasLtGemm {
 public:
  // `handle` is borrowed and must outlive this object.
  explicit CublasLtGemm(cublasLtHandle_t handle);
  ~CublasLtGemm();
  CublasLtGemm(const CublasLtGemm&) = delete;
  CublasLtGemm& operator=(const CublasLtGemm&) = delete;

  // Enqueues the product on `stream`. x, w bf16; y bf16 or f32.
  absl::Status Run(const GemmProblem& problem, const void* x, const void* w, void* y,
                   void* workspace, size_t workspace_bytes, cudaStream_t stream);

  size_t cached_plans() const { return plans_.size(); }

 private:
  struct Plan;
  using Key = std::tuple<int, int, int, int64_t, int64_t, int64_t, int, int64_t, int64_t, int64_t,
                         bool, int, size_t>;
  absl::StatusOr<Plan*> GetPlan(const GemmProblem& p, int alignment, size_t workspace_bytes);
  absl::Status Tune(Plan& plan, const void* x, const void* w, void* y, void* workspace,
                    size_t workspace_bytes, cudaStream_t stream);

  cublasLtHandle_t handle_;
  bool autotune_ = true;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace moegraph
