// The GPT-2 byte <-> character alphabet of the ByteLevel pre-tokenizer and
// decoder: every byte gets a printable code point so BPE sees no raw bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace moegraph::byte_level {

// Code point standing for `byte`.
char32_t ByteToChar(uint8_t byte);
// The byte a code point stands for, if it is one of the 256 alphabet chars.
std::optional<uint8_t> CharToByte(char32_t c);
// UTF-8 of ByteToChar(byte).
std::string ByteToUtf8(uint8_t byte);
// The bytes a token spelled in the byte alphabet stands for; nullopt when a
// character of `token` (valid UTF-8) is outside the alphabet.
std::optional<std::string> TokenToBytes(std::string_view token);
// Appends the UTF-8 encoding of `c`.
void AppendUtf8(char32_t c, std::string* out);
// Decodes the code point at `s[*i]` (valid UTF-8) and advances `*i`.
char32_t NextCodePoint(std::string_view s, size_t* i);

}  // namespace moegraph::byte_level
