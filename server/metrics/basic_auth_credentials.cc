// BasicAuthCredentials: the file's parser and the constant-time check.
#include "server/metrics/basic_auth_credentials.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "server/config/name_hash_file.h"

namespace moegraph::metrics {
namespace {

int HexValue(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

// 64 lowercase hex digits (ReadNameHashFile checked them) into 32 bytes.
std::array<uint8_t, 32> DigestOfHex(const std::string& hex) {
  std::array<uint8_t, 32> out{};
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<uint8_t>(HexValue(hex[2 * i]) << 4 | HexValue(hex[2 * i + 1]));
  return out;
}

}  // namespace

BasicAuthCredentials::Digest BasicAuthCredentials::Sha256(const std::string& data) {
  Digest digest{};
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest.data(), &len, EVP_sha256(), nullptr);
  return digest;
}

absl::StatusOr<std::unique_ptr<BasicAuthCredentials>> BasicAuthCredentials::Load(
    const std::string& path, const std::string& field) {
  ASSIGN_OR_RETURN(std::vector<NameHashLine> users,
                   ReadNameHashFile(path, field, {"USER", "password", "users"}));
  auto credentials = std::unique_ptr<BasicAuthCredentials>(new BasicAuthCredentials());
  std::vector<std::string> names;
  for (const NameHashLine& user : users) {
    // RFC 7617: the user name ends at the first colon of the credentials.
    if (user.name.find(':') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": ", path, " line ", user.line, ": a user name cannot hold ':'"));
    }
    if (std::find(names.begin(), names.end(), user.name) != names.end()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": ", path, " line ", user.line,
                                                     ": user \"", user.name, "\" given twice"));
    }
    names.push_back(user.name);
    Entry entry;
    entry.user = Sha256(user.name);
    entry.password = DigestOfHex(user.sha256_hex);
    credentials->entries_.push_back(entry);
  }
  return credentials;
}

bool BasicAuthCredentials::Matches(const std::string& user, const std::string& password) const {
  const Digest user_digest = Sha256(user);
  const Digest password_digest = Sha256(password);
  int matched = 0;
  for (const Entry& entry : entries_) {
    const int same_user = CRYPTO_memcmp(entry.user.data(), user_digest.data(), 32) == 0;
    const int same_password = CRYPTO_memcmp(entry.password.data(), password_digest.data(), 32) == 0;
    matched |= same_user & same_password;
  }
  return matched != 0;
}

}  // namespace moegraph::metrics
