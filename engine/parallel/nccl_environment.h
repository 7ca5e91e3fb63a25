// The NCCL and CUDA settings moegraph's programs run with unless the user
// set them (docs/expert-parallel.md): NVLink multicast (NVLS) off, because a
// program using it can take a shared host's GPUs out of service; 32 hardware
// queues a GPU (CUDA_DEVICE_MAX_CONNECTIONS), so that ranks sharing a GPU
// do not queue behind each other's waits; module data loaded eagerly, so
// that a kernel's first launch cannot wait for a peer that waits for it.
#pragma once

#include <string>
#include <vector>

namespace moegraph {

// Sets each default the environment does not already hold and returns them
// as "NAME=VALUE". setenv: call before any thread starts and before CUDA
// initializes (first in main).
std::vector<std::string> ApplyNcclDefaults();

}  // namespace moegraph
