// Well-formedness follows the Unicode Standard's Table 3-7; the lossy reading
// replaces each maximal subpart of an ill-formed sequence by one U+FFFD.
#include "engine/tokenizer/utf8.h"

namespace moegraph::utf8 {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

// Length of the valid sequence starting at `p` (<= end), or 0 with `*subpart`
// set to how many bytes form the maximal invalid subpart, and `*truncated` set
// when the input ended while the bytes so far were a valid prefix.
size_t Scan(const unsigned char* p, const unsigned char* end, size_t* subpart, bool* truncated) {
  *truncated = false;
  const unsigned char b0 = p[0];
  if (b0 < 0x80) return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    *subpart = 1;
    return 0;
  }
  for (size_t i = 1; i < need; ++i) {
    if (p + i >= end) {
      *subpart = i;
      *truncated = true;
      return 0;
    }
    const unsigned char b = p[i];
    const bool ok = i == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) {
      *subpart = i;
      return 0;
    }
  }
  return need;
}

}  // namespace

bool IsValid(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    if (*p < 0x80) {
      ++p;
      continue;
    }
    size_t subpart;
    bool truncated;
    const size_t n = Scan(p, end, &subpart, &truncated);
    if (n == 0) return false;
    p += n;
  }
  return true;
}

size_t AppendLossy(std::string_view in, bool final, std::string* out) {
  const auto* begin = reinterpret_cast<const unsigned char*>(in.data());
  const auto* end = begin + in.size();
  const auto* p = begin;
  const auto* run = p;  // start of the pending run of valid bytes
  while (p < end) {
    if (*p < 0x80) {
      ++p;
      continue;
    }
    size_t subpart;
    bool truncated;
    const size_t n = Scan(p, end, &subpart, &truncated);
    if (n != 0) {
      p += n;
      continue;
    }
    out->append(reinterpret_cast<const char*>(run), p - run);
    if (truncated && !final) return p - begin;
    out->append(kReplacement);
    p += subpart;
    run = p;
  }
  out->append(reinterpret_cast<const char*>(run), p - run);
  return in.size();
}

}  // namespace moegraph::utf8
