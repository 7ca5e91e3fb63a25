// The NCCL defaults moegraph's programs set at start-up, unless the user set them.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>
#include <vector>

#include "engine/parallel/nccl_environment.h"

namespace moegraph {
namespace {

TEST_CASE(
    "NCCL defaults: NVLink multicast off, 32 GPU queues and eager module data unless the user "
    "chose",
    "[ep]") {
  const char* names[] = {"NCCL_NVLS_ENABLE", "CUDA_DEVICE_MAX_CONNECTIONS",
                         "CUDA_MODULE_DATA_LOADING"};
  std::vector<const char*> before;
  std::vector<std::string> saved;
  for (const char* n : names) {
    before.push_back(std::getenv(n));
    saved.push_back(before.back() != nullptr ? before.back() : "");
    unsetenv(n);
  }
  CHECK(ApplyNcclDefaults() == std::vector<std::string>{"NCCL_NVLS_ENABLE=0",
                                                        "CUDA_DEVICE_MAX_CONNECTIONS=32",
                                                        "CUDA_MODULE_DATA_LOADING=EAGER"});
  REQUIRE(std::getenv("NCCL_NVLS_ENABLE") != nullptr);
  CHECK(std::string(std::getenv("NCCL_NVLS_ENABLE")) == "0");
  CHECK(std::string(std::getenv("CUDA_DEVICE_MAX_CONNECTIONS")) == "32");
  CHECK(std::string(std::getenv("CUDA_MODULE_DATA_LOADING")) == "EAGER");
  setenv("NCCL_NVLS_ENABLE", "1", 1);
  CHECK(ApplyNcclDefaults().empty());
  CHECK(std::string(std::getenv("NCCL_NVLS_ENABLE")) == "1");
  unsetenv("CUDA_DEVICE_MAX_CONNECTIONS");
  CHECK(ApplyNcclDefaults() == std::vector<std::string>{"CUDA_DEVICE_MAX_CONNECTIONS=32"});
  for (size_t i = 0; i < before.size(); ++i) {
    if (!saved[i].empty() || before[i] != nullptr) {
      setenv(names[i], saved[i].c_str(), 1);
    } else {
      unsetenv(names[i]);
    }
  }
}

}  // namespace
}  // namespace moegraph
