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
  int bos_token_id = -1;  // prepended when a request asks for BOS; -1 = none
  std::vector<int> eos_token_ids;
  int max_stop_strings = 8;
  int max_stop_string_length = 256;
  int max_logprobs = 20;
  SamplingDefaults defaults;
};

// The sink is left unset; `codec` may be null (token-id prompts only).
absl::StatusOr<std::unique_ptr<GenerationRequest>> BuildGenerationRequest(
    const v1::GenerateRequest& proto, const RequestLimits& limits, const TextCodec* codec);

// A fresh request id ("req-" and 16 hex digits).
std::string NewRequestId();

}  // namespace moegraph
