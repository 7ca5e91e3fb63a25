#include "engine/backend/backend_factory.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#if MOEGRAPH_HAVE_CUDA
#include "engine/backend/cuda/cuda_backend.h"
#endif

namespace moegraph {

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const std::string& device,
                                                       const BackendOptions& options) {
  if (device == "cpu") return CreateCpuBackend();
  if (device == "cuda" || absl::StartsWith(device, "cuda:")) {
    int index = 0;
    if (device != "cuda" && (!absl::SimpleAtoi(device.substr(5), &index) || index < 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("device \"", device, "\": expected cuda:N with N >= 0"));
    }
#if MOEGRAPH_HAVE_CUDA
    return CreateCudaBackend(index, options);
#else
    (void)options;
    return absl::UnimplementedError("CUDA backend not built");
#endif
  }
  return absl::InvalidArgumentError(
      absl::StrCat("device \"", device, "\": expected cpu, cuda or cuda:N"));
}

}  // namespace moegraph
