// Picks the backend for a device string; the one place that knows which
// backends are built.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"

namespace moegraph {

// "cpu" -> the CPU backend; "cuda" / "cuda:N" -> the CUDA backend when built
// (UNIMPLEMENTED otherwise); anything else is INVALID_ARGUMENT.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const std::string& device,
                                                       const BackendOptions& options = {});

}  // namespace moegraph
