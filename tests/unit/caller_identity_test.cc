// server/service/caller_identity and PeerAddress: the API key file, the
// hashes it holds, and the identities calls get.
#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <string>

#include "server/service/caller_identity.h"
#include "server/service/generation_service.h"

namespace moegraph {
namespace {

std::string WriteKeys(const std::string& text) {
  const std::string path = std::string(MOEGRAPH_BINARY_DIR) + "/caller_identity_test.keys";
  std::ofstream(path) << text;
  return path;
}

TEST_CASE("caller identity: SHA-256 as sha256sum prints it", "[service]") {
  CHECK(Sha256Hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(Sha256Hex("secret-a") ==
        "8766b9cb08e6040b704f1e3ee1e186efccf2635b1d2634d6525333007e6aeae1");
}

TEST_CASE("caller identity: the API key file", "[service]") {
  auto none = CallerIdentity::Create("");
  REQUIRE(none.ok());
  CHECK_FALSE((*none)->requires_keys());

  const std::string hash = Sha256Hex("k1");
  std::string path = WriteKeys("# comment\n\nalice " + hash + "  # trailing comment\n");
  auto keys = CallerIdentity::Create(path);
  REQUIRE(keys.ok());
  CHECK((*keys)->requires_keys());

  path = WriteKeys("alice " + hash + "\nbob " + hash + "\n");
  CHECK(CallerIdentity::Create(path).status().message() ==
        "api_keys_file: " + path + " line 2: the same key twice");
  path = WriteKeys("alice " + std::string(64, 'A') + "\n");
  CHECK(CallerIdentity::Create(path).status().message() ==
        "api_keys_file: " + path +
            " line 1: expected \"NAME SHA256\" (the key's SHA-256 as 64 lowercase hex digits)");
  path = WriteKeys("# nothing\n");
  CHECK(CallerIdentity::Create(path).status().message() ==
        "api_keys_file: " + path + " holds no keys");
  std::remove(path.c_str());
  CHECK(CallerIdentity::Create(path).status().message() ==
        "api_keys_file: cannot open " + path + ": No such file or directory");
}

TEST_CASE("peer address: the port is dropped, the address kept", "[service]") {
  CHECK(PeerAddress("ipv4:10.0.0.7:51234") == "ipv4:10.0.0.7");
  CHECK(PeerAddress("ipv6:[::1]:51234") == "ipv6:[::1]");
  CHECK(PeerAddress("unix:/tmp/sock") == "unix:/tmp/sock");
  CHECK(PeerAddress("ipv4:10.0.0.7") == "ipv4:10.0.0.7");
}

}  // namespace
}  // namespace moegraph
