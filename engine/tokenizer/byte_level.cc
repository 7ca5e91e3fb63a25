// Printable Latin-1 bytes keep their code point; the other 68 bytes map, in
// increasing order, to U+0100 onwards (the table GPT-2 introduced).
#include "engine/tokenizer/byte_level.h"

#include <array>

namespace moegraph::byte_level {
namespace {

bool KeepsItsCodePoint(int b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct Tables {
  std::array<char32_t, 256> byte_to_char{};
  std::array<int16_t, 324> char_to_byte{};  // indexed by code point < 324
  Tables() {
    char_to_byte.fill(-1);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      byte_to_char[b] = KeepsItsCodePoint(b) ? static_cast<char32_t>(b) : next++;
      char_to_byte[byte_to_char[b]] = static_cast<int16_t>(b);
    }
  }
};

const Tables& GetTables() {
  static const Tables tables;
  return tables;
}

}  // namespace

char32_t ByteToChar(uint8_t byte) { return GetTables().byte_to_char[byte]; }

std::optional<uint8_t> CharToByte(char32_t c) {
  if (c >= GetTables().char_to_byte.size()) return std::nullopt;
  const int16_t b = GetTables().char_to_byte[c];
  if (b < 0) return std::nullopt;
  return static_cast<uint8_t>(b);
}

void AppendUtf8(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string ByteToUtf8(uint8_t byte) {
  std::string s;
  AppendUtf8(ByteToChar(byte), &s);
  return s;
}

char32_t NextCodePoint(std::string_view s, size_t* i) {
  const auto b0 = static_cast<unsigned char>(s[*i]);
  size_t n = 1;
  char32_t c = b0;
  if (b0 >= 0xF0) {
    n = 4;
    c = b0 & 0x07;
  } else if (b0 >= 0xE0) {
    n = 3;
    c = b0 & 0x0F;
  } else if (b0 >= 0xC0) {
    n = 2;
    c = b0 & 0x1F;
  }
  for (size_t k = 1; k < n && *i + k < s.size(); ++k) {
    c = (c << 6) | (static_cast<unsigned char>(s[*i + k]) & 0x3F);
  }
  *i += n;
  return c;
}

std::optional<std::string> TokenToBytes(std::string_view token) {
  std::string bytes;
  bytes.reserve(token.size());
  size_t i = 0;
  while (i < token.size()) {
    const auto b = CharToByte(NextCodePoint(token, &i));
    if (!b) return std::nullopt;
    bytes.push_back(static_cast<char>(*b));
  }
  return bytes;
}

}  // namespace moegraph::byte_level
