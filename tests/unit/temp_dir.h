// A fresh directory under the system temp dir for one test, removed with it.
#pragma once

#include <stdlib.h>
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <system_error>

namespace moegraph::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "moegraph-test") {
    std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string File(const std::string& name) const { return (path_ / name).string(); }
  std::string path() const { return path_.string(); }
  const std::filesystem::path& fs_path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace moegraph::testing
