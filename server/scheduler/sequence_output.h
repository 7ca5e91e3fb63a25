// Turns one sequence's generated tokens into streamed text and decides when
// it stops: EOS and stop token ids, stop strings (text that could begin one
// is held back until it cannot), min_tokens and max_tokens.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "server/scheduler/generation_request.h"
#include "server/text/text_codec.h"

namespace moegraph {

class SequenceOutput {
 public:
  // `detokenizer` may be null (no text is produced then).
  SequenceOutput(StopCriteria criteria, std::unique_ptr<DetokenizerStream> detokenizer);

  struct Step {
    std::string text;  // text that may be streamed now
    bool finished = false;
    FinishReason reason = FinishReason::kStop;
    std::optional<std::string> stop_string;
    std::optional<int32_t> stop_token_id;
  };
  // Records the next generated token.
  Step Add(int32_t token_id);
  // Ends the sequence early (abort, error): the text still held back.
  std::string Flush();

  int num_tokens() const { return num_tokens_; }
  // Ids the sampler must not pick for output token `index` (EOS and stop ids
  // below min_tokens).
  std::span<const int32_t> banned_ids_at(int index) const;

 private:
  size_t HeldBackSuffix() const;

  StopCriteria criteria_;
  std::unique_ptr<DetokenizerStream> detokenizer_;
  std::vector<int32_t> stop_ids_;  // EOS and stop token ids, deduplicated
  size_t max_stop_len_ = 0;
  std::string pending_;  // decoded but not yet streamed
  int num_tokens_ = 0;
};

}  // namespace moegraph
