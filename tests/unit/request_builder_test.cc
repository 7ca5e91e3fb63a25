// server/service/request_builder: wire requests to scheduler requests, with
// the server's defaults and a field-naming INVALID_ARGUMENT for each refusal.
#include <array>
#include <catch2/catch.hpp>
#include <cctype>
#include <set>

#include "server/service/request_builder.h"
#include "server/text/text_codec.h"

namespace moegraph {
namespace {

RequestLimits Limits() {
  RequestLimits l;
  l.vocab_size = 320;
  l.context_limit = 100;
  l.bos_token_id = 0;
  l.eos_token_ids = {1};
  l.max_stop_strings = 2;
  l.max_stop_string_length = 4;
  l.max_logprobs = 5;
  l.defaults.temperature = 0.7;
  l.defaults.top_k = 40;
  l.defaults.max_tokens = 64;
  return l;
}

v1::GenerateRequest Ids(std::vector<int32_t> ids) {
  v1::GenerateRequest r;
  for (int32_t id : ids) r.mutable_token_ids()->add_ids(id);
  return r;
}

std::string Refusal(const v1::GenerateRequest& r) {
  absl::StatusOr<std::unique_ptr<GenerationRequest>> built =
      BuildGenerationRequest(r, Limits(), nullptr);
  REQUIRE_FALSE(built.ok());
  CHECK(absl::IsInvalidArgument(built.status()));
  return std::string(built.status().message());
}

TEST_CASE("request builder: defaults from the server config", "[service]") {
  auto built = BuildGenerationRequest(Ids({5, 6}), Limits(), nullptr);
  REQUIRE(built.ok());
  const GenerationRequest& r = **built;
  CHECK(r.id.rfind("req-", 0) == 0);
  CHECK(r.prompt == std::vector<int32_t>{5, 6});
  CHECK(r.sampling.temperature == Approx(0.7));
  CHECK(r.sampling.top_k == 40);
  CHECK(r.sampling.top_p == 1.0f);
  CHECK(r.stop.max_tokens == 64);
  CHECK(r.stop.eos_token_ids == std::vector<int32_t>{1});
  CHECK(r.skip_special_tokens);

  // Explicit zeros are honoured (presence, not value, selects the default).
  v1::GenerateRequest explicit_zero = Ids({5});
  explicit_zero.mutable_sampling()->set_temperature(0);
  explicit_zero.mutable_sampling()->set_top_k(0);
  explicit_zero.mutable_stopping()->set_ignore_eos(true);
  explicit_zero.mutable_output()->set_skip_special_tokens(false);
  auto b2 = BuildGenerationRequest(explicit_zero, Limits(), nullptr);
  REQUIRE(b2.ok());
  CHECK((*b2)->sampling.temperature == 0.0f);
  CHECK((*b2)->sampling.top_k == 0);
  CHECK((*b2)->stop.eos_token_ids.empty());
  CHECK_FALSE((*b2)->skip_special_tokens);

  // The default max_tokens shrinks to what the context leaves.
  auto b3 = BuildGenerationRequest(Ids(std::vector<int32_t>(90, 7)), Limits(), nullptr);
  REQUIRE(b3.ok());
  CHECK((*b3)->stop.max_tokens == 10);
}

TEST_CASE("request builder: add_bos on token-id prompts", "[service]") {
  v1::GenerateRequest r = Ids({5, 6});
  r.set_add_bos(true);
  auto built = BuildGenerationRequest(r, Limits(), nullptr);
  REQUIRE(built.ok());
  CHECK((*built)->prompt == std::vector<int32_t>{0, 5, 6});
  r = Ids({0, 5});  // already there: not doubled
  r.set_add_bos(true);
  built = BuildGenerationRequest(r, Limits(), nullptr);
  REQUIRE(built.ok());
  CHECK((*built)->prompt == std::vector<int32_t>{0, 5});
  r = Ids({5, 6});
  r.set_add_bos(false);
  built = BuildGenerationRequest(r, Limits(), nullptr);
  REQUIRE(built.ok());
  CHECK((*built)->prompt == std::vector<int32_t>{5, 6});
  // Unset without a tokenizer: no BOS.
  built = BuildGenerationRequest(Ids({5, 6}), Limits(), nullptr);
  REQUIRE(built.ok());
  CHECK((*built)->prompt == std::vector<int32_t>{5, 6});
}

TEST_CASE("request builder: each refusal names its field", "[service]") {
  CHECK(Refusal(v1::GenerateRequest()).find("prompt") != std::string::npos);
  CHECK(Refusal(Ids({})).find("prompt") != std::string::npos);
  CHECK(Refusal(Ids({5, 320})).find("prompt.token_ids.ids[1]") != std::string::npos);
  CHECK(Refusal(Ids(std::vector<int32_t>(100, 3))).find("prompt") != std::string::npos);

  v1::GenerateRequest r = Ids({5});
  r.mutable_stopping()->set_max_tokens(0);
  CHECK(Refusal(r).find("stopping.max_tokens") != std::string::npos);
  r.mutable_stopping()->set_max_tokens(100);
  CHECK(Refusal(r).find("context limit") != std::string::npos);

  r = Ids({5});
  r.mutable_sampling()->set_temperature(-1);
  CHECK(Refusal(r).find("sampling.temperature") != std::string::npos);
  r = Ids({5});
  r.mutable_sampling()->set_top_p(1.5f);
  CHECK(Refusal(r).find("sampling.top_p: must be in (0, 1]") != std::string::npos);
  r = Ids({5});
  r.mutable_sampling()->set_top_k(-3);
  CHECK(Refusal(r).find("sampling.top_k") != std::string::npos);

  r = Ids({5});
  for (const char* s : {"a", "b", "c"}) r.mutable_stopping()->add_stop(s);
  CHECK(Refusal(r).find("stopping.stop: at most 2") != std::string::npos);
  r = Ids({5});
  r.mutable_stopping()->add_stop("toolong");
  CHECK(Refusal(r).find("stopping.stop[0]: at most 4 bytes") != std::string::npos);
  r = Ids({5});
  r.mutable_stopping()->add_stop_token_ids(400);
  CHECK(Refusal(r).find("stopping.stop_token_ids[0]") != std::string::npos);

  r = Ids({5});
  r.mutable_output()->set_top_logprobs(6);
  CHECK(Refusal(r).find("output.top_logprobs") != std::string::npos);

  r = Ids({5});
  r.set_request_id(std::string(300, 'x'));
  CHECK(Refusal(r).find("request_id") != std::string::npos);

  // A newline or an escape in an id would forge log lines.
  r = Ids({5});
  r.set_request_id("x\nE 2026 forged");
  CHECK(Refusal(r) ==
        "request_id: printable ASCII without spaces only (0x21-0x7E), got byte 0x0a at 1");
  r.set_request_id("a\x1b[31m");
  CHECK(Refusal(r).find("got byte 0x1b at 1") != std::string::npos);
  r.set_request_id("ok-id_1.2:3");
  CHECK(BuildGenerationRequest(r, Limits(), nullptr, nullptr).ok());
}

TEST_CASE("request builder: server ids are 128 random bits, never repeated", "[service]") {
  std::set<std::string> seen;
  std::array<int, 16> nibble{};
  for (int i = 0; i < 4000; ++i) {
    const std::string id = NewRequestId();
    REQUIRE(id.size() == 36);
    REQUIRE(id.rfind("req-", 0) == 0);
    for (char c : id.substr(4)) {
      REQUIRE(std::isxdigit(static_cast<unsigned char>(c)));
      ++nibble[std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : c - 'a' + 10];
    }
    CHECK(seen.insert(id).second);
  }
  // 128000 hex digits: each value ~8000 times; a stuck or biased source shows.
  for (int n : nibble) {
    CHECK(n > 7000);
    CHECK(n < 9000);
  }
}

TEST_CASE("request builder: length refusals say too_long; others leave the reason unset",
          "[service]") {
  auto refusal_of = [](const v1::GenerateRequest& r) -> std::string {
    const char* refusal = nullptr;
    auto built = BuildGenerationRequest(r, Limits(), nullptr, &refusal);
    REQUIRE_FALSE(built.ok());
    return refusal == nullptr ? "(none)" : refusal;
  };
  CHECK(refusal_of(Ids(std::vector<int32_t>(100, 3))) == "too_long");  // prompt fills the context
  v1::GenerateRequest r = Ids({5});
  r.mutable_stopping()->set_max_tokens(100);  // 1 + 100 > 100
  CHECK(refusal_of(r) == "too_long");
  r.mutable_stopping()->set_max_tokens(0);
  CHECK(refusal_of(r) == "(none)");
  CHECK(refusal_of(Ids({5, 320})) == "(none)");
  const char* untouched = nullptr;
  CHECK(BuildGenerationRequest(Ids({5}), Limits(), nullptr, &untouched).ok());
  CHECK(untouched == nullptr);
}

TEST_CASE("request builder: the default max_tokens stays within the state pool", "[service]") {
  RequestLimits limits = Limits();
  limits.max_sequence_tokens = 40;  // the pool holds less than the context (100)
  auto built = BuildGenerationRequest(Ids(std::vector<int32_t>(30, 7)), limits, nullptr);
  REQUIRE(built.ok());
  CHECK((*built)->stop.max_tokens == 10);
  // A prompt the pool cannot hold keeps max_tokens 1 (admission refuses it, naming the limit).
  built = BuildGenerationRequest(Ids(std::vector<int32_t>(50, 7)), limits, nullptr);
  REQUIRE(built.ok());
  CHECK((*built)->stop.max_tokens == 1);
  // An explicit max_tokens within the context is left for admission to judge.
  v1::GenerateRequest r = Ids(std::vector<int32_t>(30, 7));
  r.mutable_stopping()->set_max_tokens(60);
  built = BuildGenerationRequest(r, limits, nullptr);
  REQUIRE(built.ok());
  CHECK((*built)->stop.max_tokens == 60);
}

TEST_CASE("request builder: text prompts need a tokenizer", "[service]") {
  v1::GenerateRequest r;
  r.set_text("hello");
  auto built = BuildGenerationRequest(r, Limits(), nullptr);
  REQUIRE_FALSE(built.ok());
  CHECK(absl::IsFailedPrecondition(built.status()));
}

// One token per byte, and a count of the bytes it looked at: a bounded
// encode must stop soon after the limit.
class ByteCodec final : public TextCodec {
 public:
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_bos,
                                              size_t max_ids) const override {
    std::vector<int32_t> ids;
    if (add_bos) ids.push_back(0);
    for (const char c : text) {
      if (ids.size() > max_ids) break;
      ++bytes_seen;
      ids.push_back(static_cast<unsigned char>(c) % 300 + 2);
    }
    return ids;
  }
  std::unique_ptr<DetokenizerStream> NewDetokenizer(bool) const override { return nullptr; }
  bool default_add_bos() const override { return false; }
  mutable size_t bytes_seen = 0;
};

TEST_CASE("request builder: a text prompt is refused by its bytes before tokenizing", "[service]") {
  RequestLimits limits = Limits();
  limits.max_prompt_bytes = 1000;
  ByteCodec codec;
  v1::GenerateRequest r;
  r.set_text(std::string(1001, 'a'));
  auto built = BuildGenerationRequest(r, limits, &codec);
  REQUIRE_FALSE(built.ok());
  CHECK(absl::IsInvalidArgument(built.status()));
  CHECK(built.status().message() == "prompt.text: at most 1000 bytes (max_prompt_bytes), got 1001");
  CHECK(codec.bytes_seen == 0);
}

TEST_CASE("request builder: tokenizing stops once the prompt passes the context limit",
          "[service]") {
  RequestLimits limits = Limits();  // context limit 100
  ByteCodec codec;
  v1::GenerateRequest r;
  r.set_text(std::string(500000, 'a'));
  const char* refusal = nullptr;
  auto built = BuildGenerationRequest(r, limits, &codec, &refusal);
  REQUIRE_FALSE(built.ok());
  CHECK(absl::IsInvalidArgument(built.status()));
  CHECK(built.status().message() ==
        "prompt.text: more than 99 tokens, the most the context limit of 100 tokens allows");
  CHECK(std::string(refusal) == kRefusedTooLong);
  CHECK(codec.bytes_seen == 100);  // 99 allowed + 1 that proves it too long

  r.set_text(std::string(99, 'a'));  // fits, with room for one output token
  CHECK(BuildGenerationRequest(r, limits, &codec).ok());
}

TEST_CASE("request builder: repeated fields are counted before they are read", "[service]") {
  RequestLimits limits = Limits();
  limits.max_stop_token_ids = 3;
  v1::GenerateRequest r = Ids({5});
  for (int i = 0; i < 1000000; ++i) r.mutable_stopping()->add_stop_token_ids(7);
  auto built = BuildGenerationRequest(r, limits, nullptr);
  REQUIRE_FALSE(built.ok());
  CHECK(built.status().message() ==
        "stopping.stop_token_ids: at most 3 ids (max_stop_token_ids), got 1000000");

  r = Ids({5});
  for (int i = 0; i < 3; ++i) r.mutable_stopping()->add_stop_token_ids(7 + i);
  built = BuildGenerationRequest(r, limits, nullptr);
  REQUIRE(built.ok());
  CHECK((*built)->stop.stop_token_ids == std::vector<int32_t>{7, 8, 9});

  // A token-id prompt longer than the context: refused by its count, with
  // the first bad id never reached.
  r = Ids(std::vector<int32_t>(200000, -1));
  built = BuildGenerationRequest(r, limits, nullptr);
  REQUIRE_FALSE(built.ok());
  CHECK(built.status().message() ==
        "prompt.token_ids.ids: 200000 tokens leave no room for output in the context limit of "
        "100 tokens; at most 99");

  r = Ids({5});
  for (int i = 0; i < 3; ++i) r.mutable_stopping()->add_stop("x");
  built = BuildGenerationRequest(r, limits, nullptr);
  REQUIRE_FALSE(built.ok());
  CHECK(built.status().message() ==
        "stopping.stop: at most 2 stop strings (max_stop_strings), got 3");
}

TEST_CASE("request builder: Tokenize's text is bounded like a prompt", "[service]") {
  RequestLimits limits = Limits();
  limits.max_prompt_bytes = 50;
  ByteCodec codec;
  auto ids =
      EncodeBounded(codec, std::string(51, 'a'), false, limits.context_limit, limits, "text");
  REQUIRE_FALSE(ids.ok());
  CHECK(ids.status().message() == "text: at most 50 bytes (max_prompt_bytes), got 51");
  limits.max_prompt_bytes = 1000;
  ids = EncodeBounded(codec, std::string(101, 'a'), false, limits.context_limit, limits, "text");
  REQUIRE_FALSE(ids.ok());
  CHECK(ids.status().message() ==
        "text: more than 100 tokens, the most the context limit of 100 tokens allows");
  ids = EncodeBounded(codec, std::string(100, 'a'), false, limits.context_limit, limits, "text");
  REQUIRE(ids.ok());
  CHECK(ids->size() == 100);
}

}  // namespace
}  // namespace moegraph
