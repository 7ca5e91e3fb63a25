#include "server/service/request_builder.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "absl/strings/str_format.h"

namespace moegraph {
namespace {

constexpr size_t kMaxRequestIdLength = 256;

// From the kernel's CSPRNG: server ids and default seeds must not be
// predictable from earlier ones (a seeded mt19937_64 was: from 3,000 ids the
// next were predicted and a stranger's request aborted).
uint64_t RandomU64() {
  uint64_t v = 0;
  auto* p = reinterpret_cast<unsigned char*>(&v);
  size_t got = 0;
  while (got < sizeof(v)) {
    const ssize_t n = getrandom(p + got, sizeof(v) - got, 0);
    if (n > 0) {
      got += static_cast<size_t>(n);
    } else if (errno != EINTR) {
      std::abort();  // no kernel randomness: nothing safe to fall back to
    }
  }
  return v;
}

absl::Status Invalid(const std::string& message) { return absl::InvalidArgumentError(message); }

absl::Status CheckTokenIds(const char* field, const google::protobuf::RepeatedField<int32_t>& ids,
                           int vocab_size) {
  for (int i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size) {
      return Invalid(absl::StrFormat("%s[%d]: token id %d is out of range [0, %d)", field, i,
                                     ids[i], vocab_size));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<int32_t>> EncodeBounded(const TextCodec& codec, const std::string& text,
                                                   bool add_bos, int max_tokens,
                                                   const RequestLimits& limits, const char* field,
                                                   const char** refusal) {
  if (text.size() > static_cast<size_t>(limits.max_prompt_bytes)) {
    if (refusal != nullptr) *refusal = kRefusedTooLong;
    return Invalid(absl::StrFormat("%s: at most %d bytes (max_prompt_bytes), got %d", field,
                                   limits.max_prompt_bytes, text.size()));
  }
  absl::StatusOr<std::vector<int32_t>> ids =
      codec.Encode(text, add_bos, static_cast<size_t>(std::max(max_tokens, 0)));
  if (!ids.ok()) return Invalid(absl::StrFormat("%s: %s", field, ids.status().message()));
  if (ids->size() > static_cast<size_t>(std::max(max_tokens, 0))) {
    if (refusal != nullptr) *refusal = kRefusedTooLong;
    return Invalid(
        absl::StrFormat("%s: more than %d tokens, the most the context limit of %d "
                        "tokens allows",
                        field, max_tokens, limits.context_limit));
  }
  return ids;
}

std::string NewRequestId() { return absl::StrFormat("req-%016x%016x", RandomU64(), RandomU64()); }

absl::StatusOr<std::unique_ptr<GenerationRequest>> BuildGenerationRequest(
    const v1::GenerateRequest& proto, const RequestLimits& limits, const TextCodec* codec,
    const char** refusal) {
  auto too_long = [refusal](const std::string& message) {
    if (refusal != nullptr) *refusal = kRefusedTooLong;
    return Invalid(message);
  };
  auto request = std::make_unique<GenerationRequest>();

  if (proto.request_id().size() > kMaxRequestIdLength) {
    return Invalid(absl::StrFormat("request_id: at most %d bytes, got %d", kMaxRequestIdLength,
                                   proto.request_id().size()));
  }
  // Ids go into logs and metrics: printable ASCII only, so a client cannot
  // forge log lines (newlines, terminal escapes) through one.
  for (size_t i = 0; i < proto.request_id().size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(proto.request_id()[i]);
    if (c < 0x21 || c > 0x7e) {
      return Invalid(absl::StrFormat(
          "request_id: printable ASCII without spaces only (0x21-0x7E), got byte 0x%02x at %d", c,
          i));
    }
  }
  request->id = proto.request_id().empty() ? NewRequestId() : proto.request_id();

  // Counts of repeated fields first: refusing a huge request must cost less
  // than serving a small one (a million stop ids were once sorted).
  const v1::StoppingParams& st = proto.stopping();
  if (st.stop_size() > limits.max_stop_strings) {
    return Invalid(
        absl::StrFormat("stopping.stop: at most %d stop strings (max_stop_strings), got %d",
                        limits.max_stop_strings, st.stop_size()));
  }
  if (st.stop_token_ids_size() > limits.max_stop_token_ids) {
    return Invalid(
        absl::StrFormat("stopping.stop_token_ids: at most %d ids (max_stop_token_ids), got %d",
                        limits.max_stop_token_ids, st.stop_token_ids_size()));
  }

  // Prompt.
  const bool add_bos =
      proto.has_add_bos() ? proto.add_bos() : (codec != nullptr && codec->default_add_bos());
  switch (proto.prompt_case()) {
    case v1::GenerateRequest::kText: {
      if (proto.text().empty()) return Invalid("prompt: text is empty");
      if (codec == nullptr) {
        return absl::FailedPreconditionError(
            "prompt: text prompts need a tokenizer and this server has none; send token_ids");
      }
      // The prompt must leave room for one output token.
      absl::StatusOr<std::vector<int32_t>> ids = EncodeBounded(
          *codec, proto.text(), add_bos, limits.context_limit - 1, limits, "prompt.text", refusal);
      if (!ids.ok()) return ids.status();
      request->prompt = std::move(*ids);
      break;
    }
    case v1::GenerateRequest::kTokenIds: {
      if (proto.token_ids().ids().empty()) return Invalid("prompt: token_ids is empty");
      if (proto.token_ids().ids_size() >= limits.context_limit) {
        return too_long(absl::StrFormat(
            "prompt.token_ids.ids: %d tokens leave no room for output in the context limit of %d "
            "tokens; at most %d",
            proto.token_ids().ids_size(), limits.context_limit, limits.context_limit - 1));
      }
      absl::Status s =
          CheckTokenIds("prompt.token_ids.ids", proto.token_ids().ids(), limits.vocab_size);
      if (!s.ok()) return s;
      if (add_bos && limits.bos_token_id >= 0 && proto.token_ids().ids(0) != limits.bos_token_id) {
        request->prompt.push_back(limits.bos_token_id);
      }
      request->prompt.insert(request->prompt.end(), proto.token_ids().ids().begin(),
                             proto.token_ids().ids().end());
      break;
    }
    default:
      return Invalid("prompt: empty; set text or token_ids");
  }
  if (request->prompt.empty()) return Invalid("prompt: the text encodes to no tokens");
  const int prompt_len = static_cast<int>(request->prompt.size());
  if (prompt_len >= limits.context_limit) {
    return too_long(absl::StrFormat(
        "prompt: %d tokens leave no room for output in the context limit of %d tokens", prompt_len,
        limits.context_limit));
  }

  // Sampling.
  const v1::SamplingParams& sp = proto.sampling();
  sampling::SamplingParams& s = request->sampling;
  s.temperature =
      sp.has_temperature() ? sp.temperature() : static_cast<float>(limits.defaults.temperature);
  s.top_k = sp.has_top_k() ? sp.top_k() : limits.defaults.top_k;
  s.top_p = sp.has_top_p() ? sp.top_p() : static_cast<float>(limits.defaults.top_p);
  s.min_p = sp.has_min_p() ? sp.min_p() : static_cast<float>(limits.defaults.min_p);
  s.repetition_penalty = sp.has_repetition_penalty() ? sp.repetition_penalty() : 1.0f;
  s.presence_penalty = sp.presence_penalty();
  s.frequency_penalty = sp.frequency_penalty();
  s.seed = sp.has_seed() ? sp.seed() : RandomU64();
  s.logprobs = proto.output().logprobs();
  s.top_logprobs = proto.output().top_logprobs();
  absl::Status valid = sampling::ValidateSamplingParams(s, limits.max_logprobs);
  if (!valid.ok()) return valid;

  // Stopping.
  StopCriteria& stop = request->stop;
  const int room = limits.context_limit - prompt_len;
  if (st.has_max_tokens()) {
    if (st.max_tokens() < 1) {
      return Invalid(absl::StrFormat("stopping.max_tokens: must be >= 1, got %d", st.max_tokens()));
    }
    if (st.max_tokens() > room) {
      return too_long(absl::StrFormat(
          "stopping.max_tokens: prompt (%d tokens) + max_tokens (%d) exceeds the context limit "
          "of %d tokens; at most %d",
          prompt_len, st.max_tokens(), limits.context_limit, room));
    }
    stop.max_tokens = st.max_tokens();
  } else {
    stop.max_tokens = std::min(limits.defaults.max_tokens, room);
    // Within what the state pool holds (at least 1: a prompt the pool
    // cannot hold at all is refused at admission, naming the limit).
    if (limits.max_sequence_tokens > 0) {
      stop.max_tokens =
          std::max(1, std::min(stop.max_tokens, limits.max_sequence_tokens - prompt_len));
    }
  }
  if (st.min_tokens() < 0 || st.min_tokens() > stop.max_tokens) {
    return Invalid(absl::StrFormat("stopping.min_tokens: must be in [0, max_tokens=%d], got %d",
                                   stop.max_tokens, st.min_tokens()));
  }
  stop.min_tokens = st.min_tokens();
  for (int i = 0; i < st.stop_size(); ++i) {
    const std::string& str = st.stop(i);
    if (str.empty()) return Invalid(absl::StrFormat("stopping.stop[%d]: must not be empty", i));
    if (static_cast<int>(str.size()) > limits.max_stop_string_length) {
      return Invalid(absl::StrFormat("stopping.stop[%d]: at most %d bytes, got %d", i,
                                     limits.max_stop_string_length, str.size()));
    }
    stop.stop_strings.push_back(str);
  }
  absl::Status ids_ok =
      CheckTokenIds("stopping.stop_token_ids", st.stop_token_ids(), limits.vocab_size);
  if (!ids_ok.ok()) return ids_ok;
  stop.stop_token_ids.assign(st.stop_token_ids().begin(), st.stop_token_ids().end());
  if (!st.ignore_eos())
    stop.eos_token_ids.assign(limits.eos_token_ids.begin(), limits.eos_token_ids.end());
  stop.include_stop_str_in_output = st.include_stop_str_in_output();

  // Output.
  const v1::OutputOptions& out = proto.output();
  if (out.top_logprobs() < 0 || out.top_logprobs() > limits.max_logprobs) {
    return Invalid(absl::StrFormat("output.top_logprobs: must be in [0, %d], got %d",
                                   limits.max_logprobs, out.top_logprobs()));
  }
  request->skip_special_tokens = out.has_skip_special_tokens() ? out.skip_special_tokens() : true;
  return request;
}

}  // namespace moegraph
