// Who may scrape /metrics with HTTP basic auth: a file of "USER SHA256" lines
// (the hex SHA-256 of each user's password), never the passwords themselves.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace moegraph::metrics {

class BasicAuthCredentials {
 public:
  // `field` names the config key in errors ("metrics_basic_auth_file").
  // Lines of "USER SHA256-HEX" ('#' starts a comment); errors name the file
  // and the line. A file with no users, or a user twice, is an error.
  static absl::StatusOr<std::unique_ptr<BasicAuthCredentials>> Load(const std::string& path,
                                                                    const std::string& field);

  // True if `user` is in the file and `password` hashes to its entry. Takes
  // the same time whichever user or password is wrong (every entry is
  // compared, in constant time), so timing tells a client nothing. Any
  // thread; never mutates.
  bool Matches(const std::string& user, const std::string& password) const;

  size_t size() const { return entries_.size(); }

 private:
  using Digest = std::array<uint8_t, 32>;
  struct Entry {
    Digest user;      // SHA-256 of the name: fixed length, so compared in constant time
    Digest password;  // SHA-256 of the password, from the file
  };
  BasicAuthCredentials() = default;
  static Digest Sha256(const std::string& data);
  std::vector<Entry> entries_;
};

}  // namespace moegraph::metrics
