// Files of "NAME SHA256" lines, as the API keys file and the /metrics
// basic-auth file hold them: '#' starts a comment, blank lines are skipped,
// the hash is 64 lowercase hex digits (as sha256sum prints it). Errors name
// the config field, the file and the line.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace moegraph {

struct NameHashLine {
  std::string name;
  std::string sha256_hex;
  int line = 0;  // 1-based, for the caller's own checks' messages
};

// How the messages call the parts: e.g. {"NAME", "key", "keys"}.
struct NameHashWords {
  const char* name;    // the first column
  const char* secret;  // what the hash is of
  const char* plural;  // what an entry is, for "holds no ..."
};

// At least one line; INVALID_ARGUMENT otherwise, or for a malformed line.
absl::StatusOr<std::vector<NameHashLine>> ReadNameHashFile(const std::string& path,
                                                           const std::string& field,
                                                           const NameHashWords& words);

}  // namespace moegraph
