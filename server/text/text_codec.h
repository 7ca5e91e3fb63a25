// Text <-> token ids as the server needs them: encoding prompts and streaming
// detokenization that never splits a UTF-8 sequence. Implemented over the
// engine's tokenizer (tokenizer_codec.cc); tests substitute their own.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace moegraph {

// Turns one sequence's generated ids into text, piece by piece. Owned by the
// sequence; used from one thread.
class DetokenizerStream {
 public:
  virtual ~DetokenizerStream() = default;
  // The text that `id` completes ("" while a UTF-8 sequence is still open).
  virtual std::string Add(int32_t id) = 0;
  // Whatever is still held back, at the end of the sequence.
  virtual std::string Flush() = 0;
};

class TextCodec {
 public:
  virtual ~TextCodec() = default;
  // `add_bos`: prepend the BOS token (when the model has one). Stops once
  // the ids pass `max_ids` (returning more than `max_ids` ids, a prefix of
  // the encoding), so a too-long prompt costs no more than a fitting one.
  virtual absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_bos,
                                                      size_t max_ids) const = 0;
  virtual std::unique_ptr<DetokenizerStream> NewDetokenizer(bool skip_special_tokens) const = 0;
  // The tokenizer's own add_bos_token setting: the default for requests.
  virtual bool default_add_bos() const = 0;
};

// The tokenizer of a model directory (tokenizer.json, tokenizer_config.json).
absl::StatusOr<std::unique_ptr<TextCodec>> LoadTokenizerCodec(const std::string& model_dir);

}  // namespace moegraph
