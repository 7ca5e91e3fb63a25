#include "server/config/name_hash_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace moegraph {
namespace {

bool IsSha256Hex(absl::string_view s) {
  if (s.size() != 64) return false;
  for (const char c : s) {
    if (!absl::ascii_isxdigit(c) || absl::ascii_isupper(c)) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::vector<NameHashLine>> ReadNameHashFile(const std::string& path,
                                                           const std::string& field,
                                                           const NameHashWords& words) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": cannot open ", path, ": ", std::strerror(errno)));
  }
  std::vector<NameHashLine> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    const std::string uncommented = line.substr(0, line.find('#'));
    const absl::string_view text = absl::StripAsciiWhitespace(uncommented);
    if (text.empty()) continue;
    const std::vector<absl::string_view> parts =
        absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (parts.size() != 2 || !IsSha256Hex(parts[1])) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": ", path, " line ", n, ": expected \"", words.name,
                       " SHA256\" (the ", words.secret, "'s SHA-256 as 64 lowercase hex digits)"));
    }
    out.push_back({std::string(parts[0]), std::string(parts[1]), n});
  }
  if (in.bad()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": cannot read ", path, ": ", std::strerror(errno)));
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", path, " holds no ", words.plural));
  }
  return out;
}

}  // namespace moegraph
