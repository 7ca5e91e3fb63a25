// The two CUDA check macros of the CUDA backend, for CUDA runtime and
// cuBLASLt return codes:
//   CUDA_RETURN_IF_ERROR(expr) / CUBLAS_RETURN_IF_ERROR(expr): on failure,
//     return absl::InternalError naming the call, the error, file and line.
//   CUDA_CHECK_OR_ABORT(expr) / CUBLAS_CHECK_OR_ABORT(expr): on failure, log
//     the same at ERROR and abort; for invariants and destructors, where no
//     Status can be returned.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdlib>

#include "absl/status/status.h"
#include "engine/common/logging.h"

namespace moegraph::cuda_internal {

absl::Status CudaErrorStatus(cudaError_t err, const char* call, const char* file, int line);
absl::Status CublasErrorStatus(cublasStatus_t err, const char* call, const char* file, int line);
[[noreturn]] void AbortOnCudaError(cudaError_t err, const char* call, const char* file, int line);
[[noreturn]] void AbortOnCublasError(cublasStatus_t err, const char* call, const char* file,
                                     int line);

}  // namespace moegraph::cuda_internal

#define CUDA_RETURN_IF_ERROR(expr)                                                                \
  do {                                                                                            \
    const cudaError_t _mg_cuda_err = (expr);                                                      \
    if (_mg_cuda_err != cudaSuccess)                                                              \
      return ::moegraph::cuda_internal::CudaErrorStatus(_mg_cuda_err, #expr, __FILE__, __LINE__); \
  } while (0)

#define CUBLAS_RETURN_IF_ERROR(expr)                                                       \
  do {                                                                                     \
    const cublasStatus_t _mg_cublas_err = (expr);                                          \
    if (_mg_cublas_err != CUBLAS_STATUS_SUCCESS)                                           \
      return ::moegraph::cuda_internal::CublasErrorStatus(_mg_cublas_err, #expr, __FILE__, \
                                                          __LINE__);                       \
  } while (0)

#define CUDA_CHECK_OR_ABORT(expr)                                                           \
  do {                                                                                      \
    const cudaError_t _mg_cuda_err = (expr);                                                \
    if (_mg_cuda_err != cudaSuccess)                                                        \
      ::moegraph::cuda_internal::AbortOnCudaError(_mg_cuda_err, #expr, __FILE__, __LINE__); \
  } while (0)

#define CUBLAS_CHECK_OR_ABORT(expr)                                                             \
  do {                                                                                          \
    const cublasStatus_t _mg_cublas_err = (expr);                                               \
    if (_mg_cublas_err != CUBLAS_STATUS_SUCCESS)                                                \
      ::moegraph::cuda_internal::AbortOnCublasError(_mg_cublas_err, #expr, __FILE__, __LINE__); \
  } while (0)
