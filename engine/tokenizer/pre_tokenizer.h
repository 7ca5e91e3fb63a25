// The pre-tokenizer of tokenizer.json: a Sequence of Split / Digits steps,
// optionally ending in ByteLevel, cutting normalized text into the words BPE
// sees.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "engine/tokenizer/fast_patterns.h"
#include "engine/tokenizer/onig_regex.h"
#include "nlohmann/json.hpp"

namespace moegraph {

class PreTokenizer {
 public:
  // `spec` is tokenizer.json's "pre_tokenizer" (null: the text is one word).
  // ByteLevel may appear once, as the last step.
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> Create(const nlohmann::json& spec);

  // Whether words are raw bytes for a byte-level BPE (a ByteLevel step exists).
  bool byte_level() const { return byte_level_; }

  // Calls `emit` with each word of `text` (non-empty UTF-8), in order. Words
  // are valid only during the call. Thread-safe.
  void Split(std::string_view text, absl::FunctionRef<void(std::string_view)> emit) const;

 private:
  enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
  struct SplitStep {
    std::unique_ptr<OnigRegex> regex;
    Behavior behavior;
    bool invert;
    std::unique_ptr<FastPattern> fast;  // same matches as `regex`, when known
  };
  struct Scratch;
  static absl::StatusOr<Behavior> ParseBehavior(const nlohmann::json& v, const std::string& where);
  absl::Status AddStep(const nlohmann::json& step, const std::string& where, bool last);
  void Run(size_t step, std::string_view piece, Scratch& scratch,
           absl::FunctionRef<void(std::string_view)> emit) const;
  void RunByteLevel(std::string_view piece, Scratch& scratch,
                    absl::FunctionRef<void(std::string_view)> emit) const;

  std::vector<SplitStep> steps_;
  bool byte_level_ = false;
  bool add_prefix_space_ = false;
  std::unique_ptr<OnigRegex> gpt2_regex_;  // ByteLevel with use_regex
};

}  // namespace moegraph
