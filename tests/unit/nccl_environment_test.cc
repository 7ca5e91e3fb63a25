// The NCCL defaults moegraph's programs set at start-up, unless the user set them.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>
#include <vector>

#include "engine/parallel/nccl_environment.h"

namespace moegraph {
namespace {

TEST_CASE("NCCL defaults: NVLink multicast off unless the user chose", "[ep]") {
  const char* before = std::getenv("NCCL_NVLS_ENABLE");
  const std::string saved = before != nullptr ? before : "";
  unsetenv("NCCL_NVLS_ENABLE");
  CHECK(ApplyNcclDefaults() == std::vector<std::string>{"NCCL_NVLS_ENABLE=0"});
  REQUIRE(std::getenv("NCCL_NVLS_ENABLE") != nullptr);
  CHECK(std::string(std::getenv("NCCL_NVLS_ENABLE")) == "0");
  setenv("NCCL_NVLS_ENABLE", "1", 1);
  CHECK(ApplyNcclDefaults().empty());
  CHECK(std::string(std::getenv("NCCL_NVLS_ENABLE")) == "1");
  if (before != nullptr) {
    setenv("NCCL_NVLS_ENABLE", saved.c_str(), 1);
  } else {
    unsetenv("NCCL_NVLS_ENABLE");
  }
}

}  // namespace
}  // namespace moegraph
