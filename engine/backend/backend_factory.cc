#include "engine/backend/backend_factory.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace moegraph {

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const std::string& device) {
  if (device == "cpu") return CreateCpuBackend();
  if (device == "cuda" || absl::StartsWith(device, "cuda:")) {
    return absl::UnimplementedError("CUDA backend not built");
  }
  return absl::InvalidArgumentError(
      absl::StrCat("device \"", device, "\": expected cpu, cuda or cuda:N"));
}

}  // namespace moegraph
