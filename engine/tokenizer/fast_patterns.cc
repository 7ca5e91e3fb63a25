// The three DeepSeek split patterns, matched by scanning code points:
//   1. \p{N}{1,3}
//   2. [\x{4e00}-\x{9fa5}\x{3040}-\x{309f}\x{30a0}-\x{30ff}]+
//   3. [ASCII punct][A-Za-z]+ | [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ |
//      ' '?[\p{P}\p{S}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
// Oniguruma takes the leftmost start and, there, the first alternative that
// matches, with greedy quantifiers backtracking; the code below works out
// where each alternative's backtracking ends instead of doing it.
#include "engine/tokenizer/fast_patterns.h"

#include <oniguruma.h>

#include <string>

#include "engine/tokenizer/byte_level.h"

namespace moegraph {
namespace {

enum : uint8_t { kL = 1, kM = 2, kN = 4, kP = 8, kS = 16, kSpace = 32 };
constexpr char32_t kCodePoints = 0x110000;

// Class bits per code point, from Oniguruma's Unicode range tables.
const std::vector<uint8_t>& ClassTable() {
  static const std::vector<uint8_t> table = [] {
    std::vector<uint8_t> t(kCodePoints, 0);
    OnigEncoding enc = ONIG_ENCODING_UTF8;
    auto mark = [&](int ctype, uint8_t bit) {
      OnigCodePoint sb_out;
      const OnigCodePoint* ranges = nullptr;
      if (ctype < 0 || enc->get_ctype_code_range(ctype, &sb_out, &ranges) != 0 || !ranges) {
        // No range table: ask code point by code point.
        for (char32_t c = 0; c < kCodePoints; ++c) {
          if (ctype >= 0 && enc->is_code_ctype(c, ctype)) t[c] |= bit;
        }
        return;
      }
      const OnigCodePoint n = ranges[0];
      for (OnigCodePoint i = 0; i < n; ++i) {
        for (OnigCodePoint c = ranges[1 + 2 * i]; c <= ranges[2 + 2 * i] && c < kCodePoints; ++c) {
          t[c] |= bit;
        }
      }
    };
    for (auto [name, bit] : {std::pair{"L", kL}, {"M", kM}, {"N", kN}, {"P", kP}, {"S", kS}}) {
      std::string n = name;
      auto* p = reinterpret_cast<OnigUChar*>(n.data());
      mark(enc->property_name_to_ctype(enc, p, p + n.size()), bit);
    }
    mark(ONIGENC_CTYPE_SPACE, kSpace);
    return t;
  }();
  return table;
}

struct Cursor {
  std::string_view text;
  const uint8_t* classes;
  // Code point at byte `i` (< text.size()) and its length.
  char32_t At(size_t i, size_t* len) const {
    const auto b = static_cast<unsigned char>(text[i]);
    if (b < 0x80) {
      *len = 1;
      return b;
    }
    size_t j = i;
    const char32_t c = byte_level::NextCodePoint(text, &j);
    *len = j - i;
    return c;
  }
  uint8_t Class(char32_t c) const { return c < kCodePoints ? classes[c] : 0; }
  // End of the run of code points from `i` whose class has any of `bits`.
  size_t RunOf(size_t i, uint8_t bits) const {
    size_t len;
    while (i < text.size() && (Class(At(i, &len)) & bits)) i += len;
    return i;
  }
};

bool IsAsciiPunct(char32_t c) {
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
         (c >= 0x7B && c <= 0x7E);
}
bool IsAsciiLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsCrLf(char c) { return c == '\r' || c == '\n'; }

// Shared driver: leftmost match of MatchAt, resuming at each match's end.
template <typename MatchAt>
void FindAllWith(std::string_view text, const MatchAt& match_at,
                 std::vector<std::pair<size_t, size_t>>* matches) {
  const Cursor cur{text, ClassTable().data()};
  size_t i = 0;
  while (i < text.size()) {
    size_t len;
    const char32_t c = cur.At(i, &len);
    const size_t end = match_at(cur, i, c, len);
    if (end != std::string_view::npos) {
      matches->emplace_back(i, end);
      i = end;
    } else {
      i += len;
    }
  }
}

class Digits13 final : public FastPattern {  // \p{N}{1,3}
 public:
  void FindAll(std::string_view text,
               std::vector<std::pair<size_t, size_t>>* matches) const override {
    FindAllWith(
        text,
        [](const Cursor& cur, size_t i, char32_t c, size_t len) {
          if (!(cur.Class(c) & kN)) return std::string_view::npos;
          size_t end = i + len;
          for (int k = 1; k < 3 && end < cur.text.size(); ++k) {
            size_t l;
            if (!(cur.Class(cur.At(end, &l)) & kN)) break;
            end += l;
          }
          return end;
        },
        matches);
  }
};

class CjkKana final : public FastPattern {  // [一-龥぀-ゟ゠-ヿ]+
 public:
  static bool In(char32_t c) {
    return (c >= 0x4E00 && c <= 0x9FA5) || (c >= 0x3040 && c <= 0x309F) ||
           (c >= 0x30A0 && c <= 0x30FF);
  }
  void FindAll(std::string_view text,
               std::vector<std::pair<size_t, size_t>>* matches) const override {
    FindAllWith(
        text,
        [](const Cursor& cur, size_t i, char32_t c, size_t len) {
          if (!In(c)) return std::string_view::npos;
          size_t end = i + len, l;
          while (end < cur.text.size() && In(cur.At(end, &l))) end += l;
          return end;
        },
        matches);
  }
};

class DeepSeekWords final : public FastPattern {  // pattern 3 above
 public:
  void FindAll(std::string_view text,
               std::vector<std::pair<size_t, size_t>>* matches) const override {
    FindAllWith(text, MatchAt, matches);
  }

 private:
  static size_t MatchAt(const Cursor& cur, size_t i, char32_t c, size_t len) {
    const std::string_view t = cur.text;
    const size_t n = t.size();
    // [ASCII punct][A-Za-z]+
    if (IsAsciiPunct(c) && i + 1 < n && IsAsciiLetter(t[i + 1])) {
      size_t end = i + 1;
      while (end < n && IsAsciiLetter(t[end])) ++end;
      return end;
    }
    const uint8_t cls = cur.Class(c);
    // [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ : first with the optional char.
    if (c != '\r' && c != '\n' && !(cls & (kL | kP | kS))) {
      const size_t end = cur.RunOf(i + len, kL | kM);
      if (end > i + len) return end;
    }
    if (cls & (kL | kM)) return cur.RunOf(i, kL | kM);
    // ' '?[\p{P}\p{S}]+[\r\n]*
    if (c == ' ' && i + 1 < n) {
      size_t l;
      if (cur.Class(cur.At(i + 1, &l)) & (kP | kS)) {
        size_t end = cur.RunOf(i + 1, kP | kS);
        while (end < n && IsCrLf(t[end])) ++end;
        return end;
      }
    }
    if (cls & (kP | kS)) {
      size_t end = cur.RunOf(i, kP | kS);
      while (end < n && IsCrLf(t[end])) ++end;
      return end;
    }
    if (!(cls & kSpace)) return std::string_view::npos;
    // The whitespace run [i, q) and where its last code point starts.
    size_t q = i, last = i, l;
    while (q < n && (cur.Class(cur.At(q, &l)) & kSpace)) {
      last = q;
      q += l;
    }
    // \s*[\r\n]+ : \s* gives back until a CR/LF follows; the last CR/LF of
    // the run ends the match (nothing after it in the run is CR/LF).
    for (size_t k = q; k > i; --k) {
      if (IsCrLf(t[k - 1])) return k;
    }
    // \s+(?!\S) : the whole run at the end of text, else all but its last
    // code point (which is then followed by whitespace).
    if (q == n) return q;
    if (last > i) return last;
    return q;  // \s+
  }
};

// Canonical spelling: regex-level escapes \r \n instead of raw CR / LF.
std::string Canonical(std::string_view pattern) {
  std::string out;
  for (char c : pattern) {
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::unique_ptr<FastPattern> FastPattern::For(std::string_view pattern) {
  const std::string p = Canonical(pattern);
  if (p == R"(\p{N}{1,3})") return std::make_unique<Digits13>();
  if (p == "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+" ||
      p == R"([\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+)") {
    return std::make_unique<CjkKana>();
  }
  if (p ==
      R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)") {
    return std::make_unique<DeepSeekWords>();
  }
  return nullptr;
}

}  // namespace moegraph
