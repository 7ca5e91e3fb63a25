// Splits follow tokenizers' NormalizedString::split: the regex's matches and
// the gaps between them form (range, is_match) segments, `invert` flips
// is_match, the behaviour merges or drops segments, and empty pieces vanish.
// Steps run depth-first per piece, which gives the same pieces in the same
// order as tokenizers' step-by-step pass over all pieces.
#include "engine/tokenizer/pre_tokenizer.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"

namespace moegraph {
namespace {

// The regex GPT-2 (and ByteLevel with use_regex) splits words with.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct Segment {
  size_t begin, end;
  bool is_match;
};

}  // namespace

// Per-thread buffers reused across calls; index = step depth.
struct PreTokenizer::Scratch {
  std::vector<std::vector<std::pair<size_t, size_t>>> matches;
  std::vector<std::vector<Segment>> segments;
  std::vector<std::vector<std::pair<size_t, size_t>>> pieces;
  std::string prefixed;
  std::vector<std::pair<size_t, size_t>> byte_level_matches;
};

absl::StatusOr<PreTokenizer::Behavior> PreTokenizer::ParseBehavior(const nlohmann::json& v,
                                                                   const std::string& where) {
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    if (s == "Removed") return Behavior::kRemoved;
    if (s == "Isolated") return Behavior::kIsolated;
    if (s == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
    if (s == "MergedWithNext") return Behavior::kMergedWithNext;
    if (s == "Contiguous") return Behavior::kContiguous;
  }
  return absl::UnimplementedError(
      absl::StrCat(where, ".behavior: ", v.dump().substr(0, 60), " is not supported"));
}

absl::Status PreTokenizer::AddStep(const nlohmann::json& step, const std::string& where,
                                   bool last) {
  if (!step.is_object() || !step.contains("type") || !step["type"].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": expected an object with a \"type\""));
  }
  const std::string& type = step["type"].get_ref<const std::string&>();
  auto get_bool = [&](const char* key, bool fallback) -> absl::StatusOr<bool> {
    if (!step.contains(key) || step[key].is_null()) return fallback;
    if (!step[key].is_boolean()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".", key, ": expected a boolean"));
    }
    return step[key].get<bool>();
  };
  if (byte_level_) {
    return absl::UnimplementedError(absl::StrCat(
        where, ": ", type, " after ByteLevel is not supported (ByteLevel must be last)"));
  }
  if (type == "Sequence") {
    if (!step.contains("pretokenizers") || !step["pretokenizers"].is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".pretokenizers: expected an array"));
    }
    const auto& list = step["pretokenizers"];
    for (size_t i = 0; i < list.size(); ++i) {
      absl::Status s = AddStep(list[i], absl::StrCat(where, ".pretokenizers[", i, "]"),
                               last && i + 1 == list.size());
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  if (type == "Split") {
    SplitStep split;
    if (!step.contains("pattern") || !step["pattern"].is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".pattern: expected {\"Regex\": ...} or {\"String\": ...}"));
    }
    const auto& pattern = step["pattern"];
    absl::StatusOr<std::unique_ptr<OnigRegex>> regex;
    if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
      regex = OnigRegex::Compile(pattern["Regex"].get_ref<const std::string&>());
      split.fast = FastPattern::For(pattern["Regex"].get_ref<const std::string&>());
    } else if (pattern.contains("String") && pattern["String"].is_string()) {
      regex = OnigRegex::CompileLiteral(pattern["String"].get_ref<const std::string&>());
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".pattern: expected {\"Regex\": ...} or {\"String\": ...}"));
    }
    if (!regex.ok())
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".pattern: ", regex.status().message()));
    split.regex = *std::move(regex);
    absl::StatusOr<Behavior> behavior =
        ParseBehavior(step.value("behavior", nlohmann::json()), where);
    if (!behavior.ok()) return behavior.status();
    split.behavior = *behavior;
    absl::StatusOr<bool> invert = get_bool("invert", false);
    if (!invert.ok()) return invert.status();
    split.invert = *invert;
    steps_.push_back(std::move(split));
    return absl::OkStatus();
  }
  if (type == "Digits") {
    absl::StatusOr<bool> individual = get_bool("individual_digits", false);
    if (!individual.ok()) return individual.status();
    // Rust's char::is_numeric is the Unicode N category; each numeric char is
    // its own match, kept alone (individual) or joined with its neighbours.
    absl::StatusOr<std::unique_ptr<OnigRegex>> regex = OnigRegex::Compile(R"(\p{N})");
    if (!regex.ok()) return regex.status();
    steps_.push_back({*std::move(regex), *individual ? Behavior::kIsolated : Behavior::kContiguous,
                      false, nullptr});
    return absl::OkStatus();
  }
  if (type == "ByteLevel") {
    if (!last) {
      return absl::UnimplementedError(
          absl::StrCat(where, ": ByteLevel must be the last pre-tokenizer"));
    }
    absl::StatusOr<bool> prefix = get_bool("add_prefix_space", true);
    if (!prefix.ok()) return prefix.status();
    absl::StatusOr<bool> use_regex = get_bool("use_regex", true);
    if (!use_regex.ok()) return use_regex.status();
    byte_level_ = true;
    add_prefix_space_ = *prefix;
    if (*use_regex) {
      absl::StatusOr<std::unique_ptr<OnigRegex>> regex = OnigRegex::Compile(kGpt2Pattern);
      if (!regex.ok()) return regex.status();
      gpt2_regex_ = *std::move(regex);
    }
    return absl::OkStatus();
  }
  return absl::UnimplementedError(
      absl::StrCat(where, ": pre-tokenizer type \"", type,
                   "\" is not supported (Sequence, Split, Digits, ByteLevel are)"));
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::Create(const nlohmann::json& spec) {
  auto pre = std::unique_ptr<PreTokenizer>(new PreTokenizer());
  if (!spec.is_null()) {
    absl::Status s = pre->AddStep(spec, "pre_tokenizer", /*last=*/true);
    if (!s.ok()) return s;
  }
  return pre;
}

void PreTokenizer::Split(std::string_view text,
                         absl::FunctionRef<void(std::string_view)> emit) const {
  if (text.empty()) return;
  thread_local Scratch scratch;
  if (scratch.segments.size() < steps_.size()) {
    scratch.matches.resize(steps_.size());
    scratch.segments.resize(steps_.size());
    scratch.pieces.resize(steps_.size());
  }
  Run(0, text, scratch, emit);
}

void PreTokenizer::Run(size_t step, std::string_view piece, Scratch& scratch,
                       absl::FunctionRef<void(std::string_view)> emit) const {
  if (step == steps_.size()) {
    if (byte_level_) {
      RunByteLevel(piece, scratch, emit);
    } else {
      emit(piece);
    }
    return;
  }
  const SplitStep& split = steps_[step];
  auto& matches = scratch.matches[step];
  matches.clear();
  if (split.fast) {
    split.fast->FindAll(piece, &matches);
  } else {
    split.regex->FindAll(piece, &matches);
  }

  auto& segments = scratch.segments[step];
  segments.clear();
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (prev != b) segments.push_back({prev, b, split.invert});
    segments.push_back({b, e, !split.invert});
    prev = e;
  }
  if (prev != piece.size()) segments.push_back({prev, piece.size(), split.invert});

  auto& pieces = scratch.pieces[step];
  pieces.clear();
  bool previous_match = false;
  switch (split.behavior) {
    case Behavior::kIsolated:
      for (const Segment& s : segments) pieces.emplace_back(s.begin, s.end);
      break;
    case Behavior::kRemoved:
      for (const Segment& s : segments) {
        if (!s.is_match) pieces.emplace_back(s.begin, s.end);
      }
      break;
    case Behavior::kContiguous:
      for (const Segment& s : segments) {
        if (s.is_match == previous_match && !pieces.empty()) {
          pieces.back().second = s.end;
        } else {
          pieces.emplace_back(s.begin, s.end);
        }
        previous_match = s.is_match;
      }
      break;
    case Behavior::kMergedWithPrevious:
      for (const Segment& s : segments) {
        if (s.is_match && !previous_match && !pieces.empty()) {
          pieces.back().second = s.end;
        } else {
          pieces.emplace_back(s.begin, s.end);
        }
        previous_match = s.is_match;
      }
      break;
    case Behavior::kMergedWithNext:
      for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
        if (it->is_match && !previous_match && !pieces.empty()) {
          pieces.back().first = it->begin;
        } else {
          pieces.emplace_back(it->begin, it->end);
        }
        previous_match = it->is_match;
      }
      std::reverse(pieces.begin(), pieces.end());
      break;
  }
  // Deeper steps use their own buffers, so this list survives the recursion.
  for (size_t i = 0; i < pieces.size(); ++i) {
    const auto [b, e] = pieces[i];
    if (e > b) Run(step + 1, piece.substr(b, e - b), scratch, emit);
  }
}

void PreTokenizer::RunByteLevel(std::string_view piece, Scratch& scratch,
                                absl::FunctionRef<void(std::string_view)> emit) const {
  if (add_prefix_space_ && piece.front() != ' ') {
    scratch.prefixed.assign(1, ' ');
    scratch.prefixed.append(piece);
    piece = scratch.prefixed;
  }
  if (!gpt2_regex_) {
    emit(piece);
    return;
  }
  // Isolated split: every match and every gap is a word.
  auto& matches = scratch.byte_level_matches;
  matches.clear();
  gpt2_regex_->FindAll(piece, &matches);
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (prev != b) emit(piece.substr(prev, b - prev));
    if (e > b) emit(piece.substr(b, e - b));
    prev = e;
  }
  if (prev != piece.size()) emit(piece.substr(prev));
}

}  // namespace moegraph
