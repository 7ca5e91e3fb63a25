// Hand-written matchers for the pre-tokenizer regexes of DeepSeek's
// tokenizer.json, which dominate encode time under Oniguruma. Each gives
// exactly Oniguruma's matches (same Unicode classes: they are read from
// Oniguruma's own tables); a unit test and the fuzz target compare the two.
#pragma once

#include <memory>
#include <string_view>
#include <utility>
#include <vector>

namespace moegraph {

class FastPattern {
 public:
  // A matcher for `pattern` (as written in tokenizer.json, JSON-decoded), or
  // null when it is not one we know.
  static std::unique_ptr<FastPattern> For(std::string_view pattern);
  virtual ~FastPattern() = default;
  // Same contract as OnigRegex::FindAll (the known patterns never match empty).
  virtual void FindAll(std::string_view text,
                       std::vector<std::pair<size_t, size_t>>* matches) const = 0;
};

}  // namespace moegraph
