// Text <-> token ids for DeepSeek-V4 (and Qwen / Llama-3 style) checkpoints:
// a byte-level BPE `tokenizer.json` reproduced id-for-id as the Hugging Face
// `tokenizers` library would, plus a streaming detokenizer for text deltas.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace moegraph {

// An immutable tokenizer. Every const method may be called from many threads
// at once; Encode's internal word cache is the only mutable state and it is
// guarded internally.
class Tokenizer {
 public:
  // Reads `model_dir`/tokenizer.json (required) and
  // `model_dir`/tokenizer_config.json (optional: bos/eos names and
  // `add_bos_token`). Components the loader does not implement are refused
  // with an error naming the component, never silently approximated.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& model_dir);

  // Same as Load, from the two files' contents (`tokenizer_config_json` may be
  // empty). Used by tests and the fuzz target.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(
      std::string_view tokenizer_json, std::string_view tokenizer_config_json);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Ids `tokenizers` gives for `text`. With `add_special_tokens`, the
  // post-processor's template is applied when tokenizer.json has one;
  // otherwise the BOS token is prepended when tokenizer_config.json says
  // `add_bos_token: true`. INVALID_ARGUMENT if `text` is not valid UTF-8.
  // Stops once more than `max_ids` ids are known (a request's context limit:
  // the rest of the text is not run through BPE) and then returns
  // `max_ids` + 1 ids, a prefix of the full encoding.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_special_tokens,
                                              size_t max_ids = SIZE_MAX) const;

  // Text for `ids`, as `tokenizers`' decode: unknown ids are dropped, special
  // tokens are dropped when `skip_special_tokens`, and byte sequences that are
  // not valid UTF-8 become U+FFFD (one per maximal invalid subpart, as Rust's
  // String::from_utf8_lossy does).
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

  // One past the largest id of the vocabulary and the added tokens.
  int vocab_size() const;
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  // tokenizer_config.json's `add_bos_token` (false when absent).
  bool add_bos() const;
  // True for added tokens marked `special` (those Decode may skip).
  bool IsSpecial(int32_t id) const;
  // The id of a token spelled as in tokenizer.json (added tokens first).
  std::optional<int32_t> TokenToId(std::string_view token) const;

  // The raw bytes `id` decodes to (possibly an incomplete UTF-8 sequence);
  // empty for unknown ids. Decode is the lossy UTF-8 reading of the
  // concatenation of these.
  std::string_view TokenBytes(int32_t id) const;

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Turns ids arriving one at a time into text deltas. The deltas concatenate to
// exactly tokenizer.Decode(all ids so far, skip_special_tokens) once Flush has
// been called, and every delta is valid UTF-8: bytes that may still become a
// character are held back (at most 3). Flush emits held bytes that never
// completed as one U+FFFD, which is what Decode's lossy reading gives for a
// truncated sequence at the end. Not thread-safe; one per stream. Holds a
// reference to `tokenizer`, which must outlive it.
class StreamingDetokenizer {
 public:
  StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens);

  // Appends `id`; returns the text that became final (often empty).
  std::string Add(int32_t id);
  // Ends the stream: returns whatever was held back, then resets.
  std::string Flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  std::string pending_;  // an incomplete but so-far valid UTF-8 prefix
};

}  // namespace moegraph
