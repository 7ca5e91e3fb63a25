// Checks a GenerateRequest from the wire and turns it into the scheduler's
// GenerationRequest. Every refusal is INVALID_ARGUMENT naming the field and
// its allowed range (FAILED_PRECONDITION for a text prompt without a
// tokenizer).
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "moegraph/v1/generation.pb.h"
#include "server/config/server_config.h"
#include "server/scheduler/generation_request.h"
#include "server/text/text_codec.h"

namespace moegraph {

struct RequestLimits {
  int vocab_size = 0;
  int context_limit = 0;
  // The most prompt + max_tokens the state pool holds for one request (0 =
  // no limit beyond context_limit). A default max_tokens stays within it; a
  // larger explicit one is the scheduler's to refuse (RESOURCE_EXHAUSTED).
  int max_sequence_tokens = 0;
  int bos_token_id = -1;  // prepended when a request asks for BOS; -1 = none
  std::vector<int> eos_token_ids;
  // Checked before any work on the request: a text prompt's bytes before
  // tokenization, and stop_token_ids' count.
  int max_prompt_bytes = 1 << 20;
  int max_stop_token_ids = 64;
  int max_stop_strings = 8;
  int max_stop_string_length = 256;
  int max_logprobs = 20;
  SamplingDefaults defaults;
};

// The refusal reason of a request whose prompt + max_tokens exceeds the
// context limit, for the moegraph_requests_rejected_total metric.
inline constexpr char kRefusedTooLong[] = "too_long";

// The sink is left unset; `codec` may be null (token-id prompts only). On a
// refusal that has a metric reason, `refusal` (if given) is set to it
// (kRefusedTooLong); other refusals leave it untouched.
absl::StatusOr<std::unique_ptr<GenerationRequest>> BuildGenerationRequest(
    const v1::GenerateRequest& proto, const RequestLimits& limits, const TextCodec* codec,
    const char** refusal = nullptr);

// Text to token ids for a request or for Tokenize, bounded as a request is:
// INVALID_ARGUMENT naming `field` when the text has more than
// max_prompt_bytes bytes (checked before tokenizing) or more than
// `max_tokens` tokens (tokenizing stops there), or is not valid UTF-8.
// `refusal` as for BuildGenerationRequest.
absl::StatusOr<std::vector<int32_t>> EncodeBounded(const TextCodec& codec, const std::string& text,
                                                   bool add_bos, int max_tokens,
                                                   const RequestLimits& limits, const char* field,
                                                   const char** refusal = nullptr);

// A fresh request id ("req-" and 16 hex digits).
std::string NewRequestId();

}  // namespace moegraph
