// Fuzzes what a Generate call does with a client's bytes before the
// scheduler sees them: parse a moegraph.v1.GenerateRequest, then validate and
// tokenize it (the dsv4-tiny tokenizer) against small limits. An accepted
// request must lie within every limit; a refusal must be INVALID_ARGUMENT
// naming a field. Seeds: tests/fuzz/seeds/generate_request.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "moegraph/v1/generation.pb.h"
#include "server/service/request_builder.h"
#include "server/text/text_codec.h"

namespace {

moegraph::RequestLimits Limits() {
  moegraph::RequestLimits l;
  l.vocab_size = 320;
  l.context_limit = 64;
  l.max_sequence_tokens = 48;
  l.bos_token_id = 0;
  l.eos_token_ids = {1};
  l.max_prompt_bytes = 4096;
  l.max_stop_token_ids = 4;
  l.max_stop_strings = 2;
  l.max_stop_string_length = 8;
  l.max_logprobs = 5;
  l.defaults.max_tokens = 16;
  return l;
}

const moegraph::TextCodec* Codec() {
  static const moegraph::TextCodec* codec = [] {
    auto loaded = moegraph::LoadTokenizerCodec(std::string(MOEGRAPH_SOURCE_DIR) +
                                               "/tests/fixtures/dsv4-tiny");
    if (!loaded.ok()) __builtin_trap();
    return loaded->release();
  }();
  return codec;
}

bool Accepted(const moegraph::GenerationRequest& r, const moegraph::RequestLimits& l) {
  const int prompt = static_cast<int>(r.prompt.size());
  if (prompt < 1 || prompt >= l.context_limit) return false;
  for (int32_t id : r.prompt) {
    if (id < 0 || id >= l.vocab_size) return false;
  }
  if (r.stop.max_tokens < 1 || prompt + r.stop.max_tokens > l.context_limit) return false;
  if (r.stop.min_tokens < 0 || r.stop.min_tokens > r.stop.max_tokens) return false;
  if (static_cast<int>(r.stop.stop_token_ids.size()) > l.max_stop_token_ids) return false;
  for (int32_t id : r.stop.stop_token_ids) {
    if (id < 0 || id >= l.vocab_size) return false;
  }
  if (static_cast<int>(r.stop.stop_strings.size()) > l.max_stop_strings) return false;
  for (const std::string& s : r.stop.stop_strings) {
    if (s.empty() || static_cast<int>(s.size()) > l.max_stop_string_length) return false;
  }
  if (r.id.empty() || r.id.size() > 256) return false;
  for (const char c : r.id) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return r.sampling.top_logprobs >= 0 && r.sampling.top_logprobs <= l.max_logprobs;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  moegraph::v1::GenerateRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size)))
    return 0;  // the service's INVALID_ARGUMENT
  const moegraph::TextCodec* codec = Codec();
  const moegraph::RequestLimits limits = Limits();
  for (const moegraph::TextCodec* c : {codec, static_cast<const moegraph::TextCodec*>(nullptr)}) {
    const char* refusal = nullptr;
    absl::StatusOr<std::unique_ptr<moegraph::GenerationRequest>> built =
        moegraph::BuildGenerationRequest(request, limits, c, &refusal);
    if (built.ok()) {
      if (!Accepted(**built, limits)) __builtin_trap();
      continue;
    }
    const absl::Status& s = built.status();
    if (!absl::IsInvalidArgument(s) && !absl::IsFailedPrecondition(s)) __builtin_trap();
    // The message names the field: "field: what is wrong".
    const size_t colon = s.message().find(": ");
    if (colon == absl::string_view::npos || colon == 0) __builtin_trap();
  }
  return 0;
}
