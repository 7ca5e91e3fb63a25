// Rules as tokenizers' AddedVocabulary::find_matches: a single_word match must
// not touch word characters on either side; lstrip widens a match over the
// whitespace before it (not past the previous match), rstrip over the
// whitespace after it. Matching resumes where the raw match ended.
#include "engine/tokenizer/added_tokens.h"

#include <algorithm>

#include "engine/tokenizer/byte_level.h"

namespace moegraph {
namespace {

// Unicode White_Space, which Rust's \s (used by tokenizers here) matches.
bool IsWhiteSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// Start of the run of whitespace that ends `text`.
size_t TrailingSpaceStart(std::string_view text) {
  size_t start = text.size();
  size_t i = 0;
  size_t run_start = 0;
  bool in_run = false;
  while (i < text.size()) {
    const size_t at = i;
    const char32_t c = byte_level::NextCodePoint(text, &i);
    if (IsWhiteSpace(c)) {
      if (!in_run) run_start = at;
      in_run = true;
    } else {
      in_run = false;
    }
  }
  if (in_run) start = run_start;
  return start;
}

size_t LeadingSpaceEnd(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    size_t next = i;
    if (!IsWhiteSpace(byte_level::NextCodePoint(text, &next))) break;
    i = next;
  }
  return i;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<Token> tokens) : tokens_(std::move(tokens)) {
  terminal_.push_back(-1);
  bool any_single_word = false;
  for (size_t t = 0; t < tokens_.size(); ++t) {
    const std::string& content = tokens_[t].content;
    if (content.empty()) continue;
    any_single_word |= tokens_[t].single_word;
    first_byte_[static_cast<unsigned char>(content[0])] = true;
    int32_t node = 0;
    for (char c : content) {
      const uint64_t key = (static_cast<uint64_t>(node) << 8) | static_cast<unsigned char>(c);
      auto it = edges_.find(key);
      if (it == edges_.end()) {
        const auto child = static_cast<int32_t>(terminal_.size());
        terminal_.push_back(-1);
        it = edges_.emplace(key, child).first;
      }
      node = it->second;
    }
    if (terminal_[node] < 0) terminal_[node] = static_cast<int32_t>(t);
  }
  if (any_single_word) {
    auto re = OnigRegex::Compile(R"(\w)");
    if (re.ok()) word_char_ = *std::move(re);
  }
}

bool AddedTokenMatcher::FindLeftmostLongest(std::string_view text, size_t from, size_t* begin,
                                            size_t* end, int* token) const {
  for (size_t i = from; i < text.size(); ++i) {
    if (!first_byte_[static_cast<unsigned char>(text[i])]) continue;
    int32_t node = 0;
    int best = -1;
    size_t best_end = 0;
    for (size_t j = i; j < text.size(); ++j) {
      auto it =
          edges_.find((static_cast<uint64_t>(node) << 8) | static_cast<unsigned char>(text[j]));
      if (it == edges_.end()) break;
      node = it->second;
      if (terminal_[node] >= 0) {
        best = terminal_[node];
        best_end = j + 1;
      }
    }
    if (best >= 0) {
      *begin = i;
      *end = best_end;
      *token = best;
      return true;
    }
  }
  return false;
}

bool AddedTokenMatcher::EndsWithWordChar(std::string_view text) const {
  if (text.empty() || !word_char_) return false;
  size_t start = text.size() - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  return word_char_->Find(text.substr(start)).first == 0;
}

bool AddedTokenMatcher::StartsWithWordChar(std::string_view text) const {
  if (text.empty() || !word_char_) return false;
  size_t i = 0;
  byte_level::NextCodePoint(text, &i);
  return word_char_->Find(text.substr(0, std::min(i, text.size()))).first == 0;
}

void AddedTokenMatcher::Split(std::string_view text, std::vector<Piece>* out) const {
  size_t start_offset = 0;
  size_t from = 0;
  size_t begin, end;
  int t;
  while (from < text.size() && FindLeftmostLongest(text, from, &begin, &end, &t)) {
    from = end;
    const Token& token = tokens_[t];
    if (token.single_word) {
      const bool space_before = begin == 0 || !EndsWithWordChar(text.substr(0, begin));
      const bool space_after = end == text.size() || !StartsWithWordChar(text.substr(end));
      if (!space_before || !space_after) continue;
    }
    if (token.lstrip) begin = std::max(TrailingSpaceStart(text.substr(0, begin)), start_offset);
    if (token.rstrip) end += LeadingSpaceEnd(text.substr(end));
    // A token that begins inside the previous match's stripped space would
    // make an inverted range; tokenizers would panic there, we keep it empty.
    begin = std::min(begin, end);
    if (start_offset < begin) out->push_back({start_offset, begin, -1});
    out->push_back({begin, end, token.id});
    start_offset = end;
  }
  if (start_offset < text.size()) out->push_back({start_offset, text.size(), -1});
}

}  // namespace moegraph
