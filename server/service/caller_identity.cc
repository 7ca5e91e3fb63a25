#include "server/service/caller_identity.h"

#include <openssl/evp.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "grpc/grpc_security_constants.h"
#include "grpcpp/security/auth_context.h"

namespace moegraph {
namespace {

constexpr char kBearer[] = "Bearer ";

bool IsSha256Hex(absl::string_view s) {
  if (s.size() != 64) return false;
  for (const char c : s) {
    if (!absl::ascii_isxdigit(c) || absl::ascii_isupper(c)) return false;
  }
  return true;
}

}  // namespace

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

absl::StatusOr<std::unique_ptr<CallerIdentity>> CallerIdentity::Create(
    const std::string& api_keys_file) {
  auto identity = std::unique_ptr<CallerIdentity>(new CallerIdentity());
  if (api_keys_file.empty()) return identity;
  std::ifstream in(api_keys_file);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("api_keys_file: cannot open ", api_keys_file, ": ", std::strerror(errno)));
  }
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    const std::string uncommented = line.substr(0, line.find('#'));
    const absl::string_view text = absl::StripAsciiWhitespace(uncommented);
    if (text.empty()) continue;
    const std::vector<absl::string_view> parts =
        absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (parts.size() != 2 || !IsSha256Hex(parts[1])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "api_keys_file: ", api_keys_file, " line ", n,
          ": expected \"NAME SHA256\" (the key's SHA-256 as 64 lowercase hex digits)"));
    }
    if (!identity->key_names_.emplace(std::string(parts[1]), std::string(parts[0])).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("api_keys_file: ", api_keys_file, " line ", n, ": the same key twice"));
    }
  }
  if (identity->key_names_.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("api_keys_file: ", api_keys_file, " holds no keys"));
  }
  return identity;
}

absl::StatusOr<std::string> CallerIdentity::Identify(const grpc::ServerContextBase& context) const {
  if (requires_keys()) {
    const auto& metadata = context.client_metadata();
    auto it = metadata.find("authorization");
    if (it == metadata.end() ||
        !absl::StartsWith(absl::string_view(it->second.data(), it->second.size()), kBearer)) {
      return absl::UnauthenticatedError(
          "this server requires an API key: send metadata \"authorization: Bearer KEY\"");
    }
    const std::string key(it->second.data() + std::strlen(kBearer),
                          it->second.size() - std::strlen(kBearer));
    auto name = key_names_.find(Sha256Hex(key));
    if (name == key_names_.end()) return absl::UnauthenticatedError("unknown API key");
    return absl::StrCat("key:", name->second);
  }
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth != nullptr && auth->IsPeerAuthenticated()) {
    for (const grpc::string_ref& cn : auth->FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME)) {
      return absl::StrCat("cert:", std::string(cn.data(), cn.size()));
    }
  }
  return std::string();
}

}  // namespace moegraph
