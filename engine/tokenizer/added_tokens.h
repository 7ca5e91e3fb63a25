// Finds added tokens (e.g. <｜end▁of▁sentence｜>) in text before
// pre-tokenization: leftmost-longest matching as tokenizers' Aho-Corasick
// LeftmostLongest, then its single_word / lstrip / rstrip rules.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/tokenizer/onig_regex.h"

namespace moegraph {

class AddedTokenMatcher {
 public:
  struct Token {
    std::string content;  // as matched (normalized already when it should be)
    int32_t id;
    bool single_word, lstrip, rstrip;
  };
  // A run of text [begin, end) of the input; `id` is the added token it is,
  // or -1 for plain text still to be tokenized.
  struct Piece {
    size_t begin, end;
    int32_t id;
  };

  explicit AddedTokenMatcher(std::vector<Token> tokens);
  bool empty() const { return tokens_.empty(); }

  // Appends the pieces of `text` (covering it; never empty pieces unless
  // `text` is empty, in which case nothing is appended) to `out`.
  void Split(std::string_view text, std::vector<Piece>* out) const;

 private:
  // Longest token starting at the leftmost position >= `from`; false if none.
  bool FindLeftmostLongest(std::string_view text, size_t from, size_t* begin, size_t* end,
                           int* token) const;
  bool EndsWithWordChar(std::string_view text) const;
  bool StartsWithWordChar(std::string_view text) const;

  std::vector<Token> tokens_;
  // Byte trie over the contents: (node << 8 | byte) -> child node.
  absl::flat_hash_map<uint64_t, int32_t> edges_;
  std::vector<int32_t> terminal_;  // per node: index into tokens_, or -1
  bool first_byte_[256] = {};
  std::unique_ptr<OnigRegex> word_char_;  // \w, only with single_word tokens
};

}  // namespace moegraph
