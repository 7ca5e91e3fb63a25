// Status construction and abort paths of the CUDA check macros.
#include "engine/backend/cuda/cuda_check.h"

#include "absl/strings/str_format.h"

namespace moegraph::cuda_internal {
namespace {

const char* Basename(const char* file) {
  const char* slash = file;
  for (const char* p = file; *p; ++p)
    if (*p == '/') slash = p + 1;
  return slash;
}

}  // namespace

absl::Status CudaErrorStatus(cudaError_t err, const char* call, const char* file, int line) {
  return absl::InternalError(absl::StrFormat("%s failed: %s (%s) at %s:%d", call,
                                             cudaGetErrorString(err), cudaGetErrorName(err),
                                             Basename(file), line));
}

absl::Status CublasErrorStatus(cublasStatus_t err, const char* call, const char* file, int line) {
  return absl::InternalError(absl::StrFormat("%s failed: cublas status %d at %s:%d", call,
                                             static_cast<int>(err), Basename(file), line));
}

void AbortOnCudaError(cudaError_t err, const char* call, const char* file, int line) {
  LOG_ERROR << CudaErrorStatus(err, call, file, line).message() << "; aborting";
  std::abort();
}

void AbortOnCublasError(cublasStatus_t err, const char* call, const char* file, int line) {
  LOG_ERROR << CublasErrorStatus(err, call, file, line).message() << "; aborting";
  std::abort();
}

}  // namespace moegraph::cuda_internal
