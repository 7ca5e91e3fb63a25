#include "engine/parallel/nccl_environment.h"

#include <cstdlib>

namespace moegraph {

std::vector<std::string> ApplyNcclDefaults() {
  // CUDA_DEVICE_MAX_CONNECTIONS: hardware queues a device gives its streams
  // (8 by default). Ranks sharing a GPU wait for each other on the device
  // (the in-process exchange's meetings): a peer's kernel queued behind a
  // waiting one in a shared queue could not start until the wait times out.
  // CUDA_MODULE_DATA_LOADING=EAGER: with lazy loading, a kernel's first
  // launch may synchronize the whole context, which never ends while a
  // peer rank waits on the device for this one (the CUDA programming
  // guide's remedy for kernels that wait on each other; the functions
  // themselves still load lazily).
  static constexpr const char* kDefaults[][2] = {{"NCCL_NVLS_ENABLE", "0"},
                                                 {"CUDA_DEVICE_MAX_CONNECTIONS", "32"},
                                                 {"CUDA_MODULE_DATA_LOADING", "EAGER"}};
  std::vector<std::string> set;
  for (const auto& [name, value] : kDefaults) {
    if (std::getenv(name) != nullptr) continue;
    setenv(name, value, /*overwrite=*/0);
    set.push_back(std::string(name) + "=" + value);
  }
  return set;
}

}  // namespace moegraph
