// UTF-8 validation and the lossy reading `tokenizers` uses when decoding
// (Rust's String::from_utf8_lossy: one U+FFFD per maximal invalid subpart).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace moegraph::utf8 {

// True when `s` is well-formed UTF-8 (no surrogates, no overlongs, <= U+10FFFF).
bool IsValid(std::string_view s);

// Appends the lossy reading of `in` to `out`. When `final` is false, a trailing
// incomplete-but-valid-so-far sequence is left unread; returns the number of
// bytes of `in` consumed (always in.size() when `final`).
size_t AppendLossy(std::string_view in, bool final, std::string* out);

// Length in bytes of the UTF-8 sequence a lead byte starts (1 for bytes that
// cannot lead, so callers always make progress).
inline size_t SequenceLength(unsigned char lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return lead < 0xF8 ? 4 : 1;
}

}  // namespace moegraph::utf8
