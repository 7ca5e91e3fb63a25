// Unicode NFC normalization (the `NFC` normalizer of tokenizer.json).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace moegraph {

// NFC form of `text` (valid UTF-8). ICU does the work: it carries the Unicode
// composition tables and is already a Debian package, which is simpler and
// safer than generating our own tables from UnicodeData.txt.
absl::StatusOr<std::string> NormalizeNfc(std::string_view text);

}  // namespace moegraph
