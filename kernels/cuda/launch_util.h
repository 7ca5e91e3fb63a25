// Host-side launch helpers shared by the kernel families.
#pragma once

#include <cuda_runtime_api.h>

namespace moegraph::cuda {

// Raises `kernel`'s dynamic shared-memory limit to `bytes` on the current
// device, calling cudaFuncSetAttribute only the first time a (kernel, device)
// needs more than before. Thread-safe.
cudaError_t EnsureDynamicSmem(const void* kernel, int bytes);

}  // namespace moegraph::cuda
