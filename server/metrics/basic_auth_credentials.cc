// BasicAuthCredentials: the file's parser and the constant-time check.
#include "server/metrics/basic_auth_credentials.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace moegraph::metrics {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // uppercase is refused too: one spelling per hash, as sha256sum prints it
}

// 64 lowercase hex digits into 32 bytes; false for anything else.
bool ParseSha256Hex(absl::string_view hex, std::array<uint8_t, 32>* out) {
  if (hex.size() != 64) return false;
  for (size_t i = 0; i < 32; ++i) {
    const int hi = HexValue(hex[2 * i]);
    const int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*out)[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
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
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": cannot open ", path, ": ", std::strerror(errno)));
  }
  auto credentials = std::unique_ptr<BasicAuthCredentials>(new BasicAuthCredentials());
  std::vector<std::string> names;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    const std::string uncommented = line.substr(0, line.find('#'));
    const absl::string_view text = absl::StripAsciiWhitespace(uncommented);
    if (text.empty()) continue;
    const std::vector<absl::string_view> parts =
        absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    Entry entry;
    if (parts.size() != 2 || !ParseSha256Hex(parts[1], &entry.password)) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": ", path, " line ", n,
          ": expected \"USER SHA256\" (the password's SHA-256 as 64 lowercase hex digits)"));
    }
    // RFC 7617: the user name ends at the first colon of the credentials.
    if (parts[0].find(':') != absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": ", path, " line ", n, ": a user name cannot hold ':'"));
    }
    const std::string name(parts[0]);
    for (const std::string& seen : names) {
      if (seen == name) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": ", path, " line ", n, ": user \"", name, "\" given twice"));
      }
    }
    names.push_back(name);
    entry.user = Sha256(name);
    credentials->entries_.push_back(entry);
  }
  if (in.bad()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": cannot read ", path, ": ", std::strerror(errno)));
  }
  if (credentials->entries_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", path, " holds no users"));
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
