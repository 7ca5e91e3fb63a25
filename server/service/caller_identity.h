// Who is calling: the name of the API key a call presents ("authorization:
// Bearer KEY" metadata, checked against a file of SHA-256 hashes), else the
// common name of its verified client certificate (mTLS), else nobody ("").
// Requests are namespaced by it: Abort and ALREADY_EXISTS see only the
// caller's own.
#pragma once

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "grpcpp/server_context.h"

namespace moegraph {

class CallerIdentity {
 public:
  // `api_keys_file`: "" for no keys; else lines of "NAME SHA256-HEX" (the
  // hash of the key; '#' starts a comment). Errors name the file and line.
  static absl::StatusOr<std::unique_ptr<CallerIdentity>> Create(const std::string& api_keys_file);

  // The caller's identity, or UNAUTHENTICATED when keys are required and the
  // call has none or an unknown one. Any thread.
  absl::StatusOr<std::string> Identify(const grpc::ServerContextBase& context) const;

  bool requires_keys() const { return !key_names_.empty(); }

 private:
  absl::flat_hash_map<std::string, std::string> key_names_;  // SHA-256 hex -> key name
};

// The lowercase hex SHA-256 of `data` (what api_keys_file holds per key).
std::string Sha256Hex(const std::string& data);

}  // namespace moegraph
