// The NCCL settings moegraph's programs run with unless the user set them
// (docs/expert-parallel.md): NVLink multicast (NVLS) off, because a program
// using it can take a shared host's GPUs out of service.
#pragma once

#include <string>
#include <vector>

namespace moegraph {

// Sets each default the environment does not already hold and returns them
// as "NAME=VALUE". setenv: call before any thread starts (first in main).
std::vector<std::string> ApplyNcclDefaults();

}  // namespace moegraph
