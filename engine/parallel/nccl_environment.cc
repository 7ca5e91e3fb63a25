#include "engine/parallel/nccl_environment.h"

#include <cstdlib>

namespace moegraph {

std::vector<std::string> ApplyNcclDefaults() {
  static constexpr const char* kDefaults[][2] = {{"NCCL_NVLS_ENABLE", "0"}};
  std::vector<std::string> set;
  for (const auto& [name, value] : kDefaults) {
    if (std::getenv(name) != nullptr) continue;
    setenv(name, value, /*overwrite=*/0);
    set.push_back(std::string(name) + "=" + value);
  }
  return set;
}

}  // namespace moegraph
