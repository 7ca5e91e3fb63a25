#include "server/service/caller_identity.h"

#include <openssl/evp.h>

#include <cstring>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "grpc/grpc_security_constants.h"
#include "grpcpp/security/auth_context.h"
#include "server/config/name_hash_file.h"

namespace moegraph {
namespace {

constexpr char kBearer[] = "Bearer ";

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
  ASSIGN_OR_RETURN(std::vector<NameHashLine> keys,
                   ReadNameHashFile(api_keys_file, "api_keys_file", {"NAME", "key", "keys"}));
  for (NameHashLine& key : keys) {
    if (!identity->key_names_.emplace(std::move(key.sha256_hex), std::move(key.name)).second) {
      return absl::InvalidArgumentError(absl::StrCat("api_keys_file: ", api_keys_file, " line ",
                                                     key.line, ": the same key twice"));
    }
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
