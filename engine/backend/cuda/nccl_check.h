// NCCL results as Status, and the precondition of every NCCL start, shared
// by the in-process communicators (nccl_exchange.cc) and the multi-process
// group (nccl_group.cc).
#pragma once

#include <nccl.h>

#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace moegraph {

inline absl::Status NcclStatus(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("NCCL ", what, ": ", ncclGetErrorString(r)));
}

// NVLink multicast can take a shared host's GPUs out of service: NCCL starts
// only once main has applied moegraph's default (or the user chose).
inline absl::Status NvlsChosen() {
  if (std::getenv("NCCL_NVLS_ENABLE") != nullptr) return absl::OkStatus();
  return absl::FailedPreconditionError(
      "NCCL: NCCL_NVLS_ENABLE is unset; call ApplyNcclDefaults() first in main, or set it");
}

}  // namespace moegraph

#define NCCL_RETURN_IF_ERROR(expr)                                                    \
  do {                                                                                \
    if (absl::Status _s = ::moegraph::NcclStatus((expr), #expr); !_s.ok()) return _s; \
  } while (0)
