// server/metrics/basic_auth_credentials: the /metrics users file and the
// password check behind its basic auth.
#include "server/metrics/basic_auth_credentials.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <string>

#include "tests/unit/temp_dir.h"

namespace moegraph::metrics {
namespace {

// printf %s PASSWORD | sha256sum
constexpr char kSecretA[] = "8766b9cb08e6040b704f1e3ee1e186efccf2635b1d2634d6525333007e6aeae1";
constexpr char kEmpty[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

std::string Write(const testing::TempDir& dir, const std::string& text) {
  const std::string path = dir.File("users");
  std::ofstream(path) << text;
  return path;
}

std::string LoadError(const std::string& path) {
  auto loaded = BasicAuthCredentials::Load(path, "metrics_basic_auth_file");
  REQUIRE_FALSE(loaded.ok());
  return std::string(loaded.status().message());
}

TEST_CASE("metrics basic auth: users and the SHA-256 of their passwords", "[metrics]") {
  testing::TempDir dir;
  const std::string path = Write(dir, std::string("# scrapers\n\nprometheus ") + kSecretA +
                                          "  # trailing comment\nempty\t" + kEmpty + "\n");
  auto loaded = BasicAuthCredentials::Load(path, "metrics_basic_auth_file");
  INFO(loaded.status().ToString());
  REQUIRE(loaded.ok());
  const BasicAuthCredentials& users = **loaded;
  CHECK(users.size() == 2);
  CHECK(users.Matches("prometheus", "secret-a"));
  CHECK(users.Matches("empty", ""));
  CHECK_FALSE(users.Matches("prometheus", "secret-b"));
  CHECK_FALSE(users.Matches("prometheus", "secret-a "));
  CHECK_FALSE(users.Matches("prometheus", ""));
  CHECK_FALSE(users.Matches("empty", "secret-a"));  // another user's password
  CHECK_FALSE(users.Matches("Prometheus", "secret-a"));
  CHECK_FALSE(users.Matches("", "secret-a"));
  CHECK_FALSE(users.Matches("nobody", "secret-a"));
}

TEST_CASE("metrics basic auth: bad files are errors naming the key, file and line", "[metrics]") {
  testing::TempDir dir;
  std::string path = Write(dir, std::string("a ") + kSecretA + "\na " + kEmpty + "\n");
  CHECK(LoadError(path) == "metrics_basic_auth_file: " + path + " line 2: user \"a\" given twice");
  const std::string expected = "metrics_basic_auth_file: " + path +
                               " line 1: expected \"USER SHA256\" (the password's SHA-256 as 64 "
                               "lowercase hex digits)";
  path = Write(dir, "a " + std::string(64, 'A') + "\n");  // uppercase: not as sha256sum prints it
  CHECK(LoadError(path) == expected);
  path = Write(dir, "a secret-a\n");  // a plaintext password is refused
  CHECK(LoadError(path) == expected);
  path = Write(dir, std::string("a ") + kSecretA + " extra\n");
  CHECK(LoadError(path) == expected);
  path = Write(dir, std::string("a:b ") + kSecretA + "\n");
  CHECK(LoadError(path) ==
        "metrics_basic_auth_file: " + path + " line 1: a user name cannot hold ':'");
  path = Write(dir, "# nobody\n");
  CHECK(LoadError(path) == "metrics_basic_auth_file: " + path + " holds no users");
  const std::string missing = dir.File("missing");
  CHECK(LoadError(missing) ==
        "metrics_basic_auth_file: cannot open " + missing + ": No such file or directory");
}

}  // namespace
}  // namespace moegraph::metrics
