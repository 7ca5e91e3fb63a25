// An Oniguruma regex compiled once and searched from many threads, with the
// match iteration `tokenizers` uses (rust-onig's find_iter).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace moegraph {

class OnigRegex {
 public:
  // Compiles `pattern` (Oniguruma default syntax, UTF-8, as rust-onig's Regex::new).
  static absl::StatusOr<std::unique_ptr<OnigRegex>> Compile(std::string_view pattern);
  // A regex matching `literal` exactly (Split's String pattern).
  static absl::StatusOr<std::unique_ptr<OnigRegex>> CompileLiteral(std::string_view literal);
  ~OnigRegex();
  OnigRegex(const OnigRegex&) = delete;
  OnigRegex& operator=(const OnigRegex&) = delete;

  // Appends to `matches` the non-overlapping matches in `text` (offsets
  // relative to text.data()), searching `text` as a whole subject so anchors
  // and lookarounds see its ends. An empty match right where the previous
  // match ended is skipped, as rust-onig does. Thread-safe.
  void FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* matches) const;

  // Leftmost match in `text`, or {npos, npos}.
  std::pair<size_t, size_t> Find(std::string_view text) const;

 private:
  OnigRegex() = default;
  void* regex_ = nullptr;  // regex_t*, owned
};

}  // namespace moegraph
