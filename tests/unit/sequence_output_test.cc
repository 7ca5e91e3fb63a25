// server/scheduler/sequence_output: stop strings (held-back text), stop ids,
// EOS, min_tokens and max_tokens.
#include <catch2/catch.hpp>

#include <string>

#include "server/scheduler/sequence_output.h"

namespace moegraph {
namespace {

// Token id i decodes to the character 'a' + i (ids 0..25).
class LetterStream final : public DetokenizerStream {
 public:
  std::string Add(int32_t id) override { return std::string(1, static_cast<char>('a' + id)); }
  std::string Flush() override { return ""; }
};

int32_t L(char c) { return c - 'a'; }

std::string Feed(SequenceOutput* out, const std::string& letters, SequenceOutput::Step* last) {
  std::string text;
  for (char c : letters) {
    *last = out->Add(L(c));
    text += last->text;
    if (last->finished) break;
  }
  return text;
}

TEST_CASE("sequence output: stop string ends the text before it", "[scheduler]") {
  StopCriteria c;
  c.max_tokens = 100;
  c.stop_strings = {"xyz"};
  SequenceOutput out(c, std::make_unique<LetterStream>());
  SequenceOutput::Step last;
  std::string text = Feed(&out, "abxyxyzqq", &last);
  CHECK(last.finished);
  CHECK(last.reason == FinishReason::kStop);
  CHECK(last.stop_string == "xyz");
  CHECK(text == "abxy");
  CHECK(out.num_tokens() == 7);
}

TEST_CASE("sequence output: text that may start a stop string is held back", "[scheduler]") {
  StopCriteria c;
  c.max_tokens = 100;
  c.stop_strings = {"xyz"};
  SequenceOutput out(c, std::make_unique<LetterStream>());
  CHECK(out.Add(L('a')).text == "a");
  CHECK(out.Add(L('x')).text == "");
  CHECK(out.Add(L('y')).text == "");
  CHECK(out.Add(L('b')).text == "xyb");
}

TEST_CASE("sequence output: include_stop_str_in_output", "[scheduler]") {
  StopCriteria c;
  c.max_tokens = 100;
  c.stop_strings = {"cd", "bc"};
  c.include_stop_str_in_output = true;
  SequenceOutput out(c, std::make_unique<LetterStream>());
  SequenceOutput::Step last;
  CHECK(Feed(&out, "abcd", &last) == "abc");
  CHECK(last.stop_string == "bc");
}

TEST_CASE("sequence output: EOS and stop ids, min_tokens, max_tokens", "[scheduler]") {
  StopCriteria c;
  c.max_tokens = 5;
  c.eos_token_ids = {L('e')};
  c.stop_token_ids = {L('s')};
  {
    SequenceOutput out(c, std::make_unique<LetterStream>());
    SequenceOutput::Step last;
    CHECK(Feed(&out, "abe", &last) == "abe");
    CHECK(last.reason == FinishReason::kStop);
    CHECK(last.stop_token_id == L('e'));
  }
  {
    SequenceOutput out(c, std::make_unique<LetterStream>());
    SequenceOutput::Step last;
    Feed(&out, "abcdfg", &last);
    CHECK(last.finished);
    CHECK(last.reason == FinishReason::kLength);
    CHECK(out.num_tokens() == 5);
  }
  {
    c.min_tokens = 2;
    SequenceOutput out(c, std::make_unique<LetterStream>());
    CHECK(out.banned_ids_at(out.num_tokens()).size() == 2);
    out.Add(L('a'));
    CHECK(out.banned_ids_at(out.num_tokens()).size() == 2);
    out.Add(L('b'));
    CHECK(out.banned_ids_at(out.num_tokens()).empty());
    SequenceOutput::Step s = out.Add(L('s'));
    CHECK(s.finished);
    CHECK(s.stop_token_id == L('s'));
  }
}

TEST_CASE("sequence output: no detokenizer, ids only", "[scheduler]") {
  StopCriteria c;
  c.max_tokens = 2;
  c.stop_strings = {"zz"};
  SequenceOutput out(c, nullptr);
  CHECK(out.Add(3).text.empty());
  SequenceOutput::Step s = out.Add(4);
  CHECK(s.finished);
  CHECK(s.reason == FinishReason::kLength);
}

}  // namespace
}  // namespace moegraph
