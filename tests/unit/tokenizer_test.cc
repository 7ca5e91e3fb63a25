// Tokenizer tests: the golden files made with the Python `tokenizers` library,
// streaming detokenization, and the pipeline pieces on small hand-made files.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/tokenizer/fast_patterns.h"
#include "engine/tokenizer/onig_regex.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "nlohmann/json.hpp"

namespace moegraph {
namespace {

using nlohmann::json;

std::string Fixture(const std::string& rel) {
  return std::string(MOEGRAPH_SOURCE_DIR) + "/tests/fixtures/" + rel;
}

json ReadJson(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str());
}

std::unique_ptr<Tokenizer> LoadOrDie(const std::string& dir) {
  auto t = Tokenizer::Load(Fixture(dir));
  INFO(t.status().ToString());
  REQUIRE(t.ok());
  return *std::move(t);
}

void CheckGolden(const std::string& dir) {
  auto tokenizer = LoadOrDie(dir);
  const json golden = ReadJson(Fixture(dir + "/tokenizer_golden.json"));
  REQUIRE(golden.size() == 300);
  int ids_ok = 0, decoded_ok = 0, streamed_ok = 0;
  for (const auto& c : golden) {
    const std::string text = c["text"];
    const std::vector<int32_t> want = c["ids"];
    const std::string decoded = c["decoded"];
    auto got = tokenizer->Encode(text, false);
    REQUIRE(got.ok());
    if (*got == want) ++ids_ok;
    if (tokenizer->Decode(want, false) == decoded) ++decoded_ok;
    StreamingDetokenizer stream(*tokenizer, false);
    std::string all;
    bool deltas_valid = true;
    for (int32_t id : want) {
      const std::string delta = stream.Add(id);
      deltas_valid &= utf8::IsValid(delta);
      all += delta;
    }
    const std::string tail = stream.Flush();
    deltas_valid &= utf8::IsValid(tail);
    all += tail;
    if (deltas_valid && all == decoded) ++streamed_ok;
  }
  CHECK(ids_ok == 300);
  CHECK(decoded_ok == 300);
  CHECK(streamed_ok == 300);
}

TEST_CASE("tokenizer: dsv4-tiny golden ids, decode and streaming", "[tokenizer]") {
  CheckGolden("dsv4-tiny");
}

TEST_CASE("tokenizer: bpe32k golden ids, decode and streaming", "[tokenizer]") {
  CheckGolden("bpe32k");
}

TEST_CASE("tokenizer: special tokens, bos/eos, add_special_tokens", "[tokenizer]") {
  auto t = LoadOrDie("dsv4-tiny");
  REQUIRE(t->bos_id() == 0);
  REQUIRE(t->eos_id() == 1);
  CHECK(t->add_bos());
  CHECK(t->IsSpecial(1));
  CHECK_FALSE(t->IsSpecial(50));
  CHECK(t->TokenToId("<｜end▁of▁sentence｜>") == 1);
  CHECK(t->vocab_size() == 320);

  auto ids = t->Encode("Hi<｜end▁of▁sentence｜>Hi", false);
  REQUIRE(ids.ok());
  auto hi = t->Encode("Hi", false);
  REQUIRE(hi.ok());
  std::vector<int32_t> want = *hi;
  want.push_back(1);
  want.insert(want.end(), hi->begin(), hi->end());
  CHECK(*ids == want);
  CHECK(t->Decode(*ids, false) == "Hi<｜end▁of▁sentence｜>Hi");
  CHECK(t->Decode(*ids, true) == "HiHi");

  auto with_bos = t->Encode("Hi", true);
  REQUIRE(with_bos.ok());
  CHECK(with_bos->front() == 0);
  CHECK(std::vector<int32_t>(with_bos->begin() + 1, with_bos->end()) == *hi);
  CHECK(t->Encode("", false)->empty());
}

TEST_CASE("tokenizer: encoding stops once it passes max_ids", "[tokenizer]") {
  auto t = LoadOrDie("bpe32k");
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "word" + std::to_string(i) + " ";
  auto full = t->Encode(text, false);
  REQUIRE(full.ok());
  REQUIRE(full->size() > 1000);
  for (size_t limit : {size_t{0}, size_t{1}, size_t{17}, size_t{1000}}) {
    auto cut = t->Encode(text, false, limit);
    REQUIRE(cut.ok());
    INFO(limit);
    CHECK(cut->size() == limit + 1);
    CHECK(std::equal(cut->begin(), cut->end(), full->begin()));
  }
  auto all = t->Encode(text, false, full->size());
  REQUIRE(all.ok());
  CHECK(*all == *full);  // exactly at the limit: nothing cut
}

TEST_CASE("tokenizer: invalid UTF-8 input is refused", "[tokenizer]") {
  auto t = LoadOrDie("dsv4-tiny");
  auto r = t->Encode("ab\xC3", false);
  CHECK(r.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(t->Encode("\xED\xA0\x80", false).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("utf8: lossy reading replaces maximal invalid subparts", "[tokenizer]") {
  auto lossy = [](std::string_view s) {
    std::string out;
    utf8::AppendLossy(s, true, &out);
    return out;
  };
  const std::string r = "\xEF\xBF\xBD";
  CHECK(lossy("abc") == "abc");
  CHECK(lossy("\xE2\x82"
              "A") == r + "A");               // truncated sequence: one U+FFFD
  CHECK(lossy("\xF0\x80\x80") == r + r + r);  // F0 80 is never valid: each byte
  CHECK(lossy("\xC0\xAF") == r + r);          // overlong lead
  CHECK(lossy("\xED\xA0\x80") == r + r + r);  // surrogate
  CHECK(lossy("\xF4\x8F\xBF") == r);          // truncated at the end
  CHECK(lossy("\xE4\xBD\xA0") == "你");
  std::string out;
  CHECK(utf8::AppendLossy("a\xE4\xBD", false, &out) == 1);  // holds the incomplete tail
  CHECK(out == "a");
}

TEST_CASE("tokenizer: streaming holds partial characters and matches lossy decode", "[tokenizer]") {
  auto t = LoadOrDie("bpe32k");
  // Ids standing for single bytes, so characters can be cut anywhere.
  auto byte_id = [&](unsigned char b) {
    std::string s;
    char32_t c = b;
    if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)) {
      int n = 0;
      for (int x = 0; x < b; ++x) {
        if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE)) ++n;
      }
      c = 256 + n;
    }
    if (c < 0x80) {
      s += static_cast<char>(c);
    } else {
      s += static_cast<char>(0xC0 | (c >> 6));
      s += static_cast<char>(0x80 | (c & 0x3F));
    }
    auto id = t->TokenToId(s);
    REQUIRE(id.has_value());
    return *id;
  };
  const std::vector<std::vector<unsigned char>> cases = {
      {0xE4, 0xBD, 0xA0, 'a'},        // 你a, split over three ids
      {0xE4, 0xBD, 'a'},              // broken in the middle
      {0xF0, 0x9F, 0x98},             // truncated at the end
      {0xFF, 'x', 0x80, 0xC3, 0xA9},  // stray bytes then é
  };
  for (const auto& bytes : cases) {
    std::vector<int32_t> ids;
    for (unsigned char b : bytes) ids.push_back(byte_id(b));
    StreamingDetokenizer stream(*t, false);
    std::string all;
    for (int32_t id : ids) {
      std::string d = stream.Add(id);
      CHECK(utf8::IsValid(d));
      all += d;
    }
    all += stream.Flush();
    CHECK(all == t->Decode(ids, false));
  }
  StreamingDetokenizer stream(*t, false);
  CHECK(stream.Add(byte_id(0xE4)).empty());
  CHECK(stream.Add(byte_id(0xBD)).empty());
  CHECK(stream.Add(byte_id(0xA0)) == "你");
}

TEST_CASE("tokenizer: concurrent Encode gives the same ids", "[tokenizer]") {
  auto t = LoadOrDie("bpe32k");
  const json golden = ReadJson(Fixture("bpe32k/tokenizer_golden.json"));
  std::vector<int> ok(4, 0);
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&, w] {
      for (int rep = 0; rep < 3; ++rep) {
        for (const auto& c : golden) {
          auto got = t->Encode(c["text"].get<std::string>(), false);
          if (got.ok() && *got == c["ids"].get<std::vector<int32_t>>()) ++ok[w];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int w = 0; w < 4; ++w) CHECK(ok[w] == 900);
}

TEST_CASE("fast_patterns: same matches as Oniguruma on DeepSeek's split regexes", "[tokenizer]") {
  const json tj = ReadJson(Fixture("dsv4-tiny/tokenizer.json"));
  // Characters from every class the patterns care about, with CR/LF, other
  // whitespace, marks, digits of other scripts, CJK edges, emoji, controls.
  const std::vector<std::string> alphabet = {"a",
                                             "Z",
                                             "q",
                                             " ",
                                             "  ",
                                             "\r",
                                             "\n",
                                             "\t",
                                             "\v",
                                             "\f",
                                             "\xC2\x85",
                                             "\xC2\xA0",
                                             "\xE2\x80\x83",
                                             "\xE2\x80\xA8",
                                             "\xE3\x80\x80",
                                             "1",
                                             "7",
                                             "\xD9\xA3",
                                             "\xE2\x85\xA0",
                                             "\xC2\xBD",
                                             ".",
                                             ",",
                                             "'",
                                             "-",
                                             "_",
                                             "$",
                                             "+",
                                             "<",
                                             "`",
                                             "~",
                                             "\xE2\x80\x94",
                                             "\xE2\x82\xAC",
                                             "\xC3\xA9",
                                             "e\xCC\x81",
                                             "\xCC\x81",
                                             "\xE0\xA4\x95\xE0\xA4\xBF",
                                             "\xD7\x90",
                                             "\xE4\xB8\x80",
                                             "\xE9\xBE\xA5",
                                             "\xE9\xBE\xA6",
                                             "\xE3\x81\x81",
                                             "\xE3\x83\xBF",
                                             "\xE3\x82\xA0",
                                             "\xEA\xB0\x80",
                                             "\xF0\x9F\x8C\xB5",
                                             "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD",
                                             "\x01",
                                             "\x7F",
                                             "\xE2\x80\x8B",
                                             "\xE2\x80\x8D",
                                             "\xEF\xBF\xBD",
                                             "\xF3\xA0\x84\x80",
                                             "\xF0\x90\x8D\x88",
                                             "\xF0\xAF\xA0\x80"};
  std::mt19937 rng(1234);
  int compared = 0;
  for (const auto& step : tj["pre_tokenizer"]["pretokenizers"]) {
    if (step["type"] != "Split") continue;
    const std::string pattern = step["pattern"]["Regex"];
    auto fast = FastPattern::For(pattern);
    REQUIRE(fast != nullptr);
    auto onig = OnigRegex::Compile(pattern);
    REQUIRE(onig.ok());
    for (int iter = 0; iter < 3000; ++iter) {
      std::string text;
      const int len = static_cast<int>(rng() % 24);
      for (int k = 0; k < len; ++k) text += alphabet[rng() % alphabet.size()];
      std::vector<std::pair<size_t, size_t>> want, got;
      (*onig)->FindAll(text, &want);
      fast->FindAll(text, &got);
      INFO("pattern " << pattern << " text " << json(text).dump());
      REQUIRE(got == want);
      ++compared;
    }
  }
  CHECK(compared == 9000);
  CHECK(FastPattern::For("\\s+") == nullptr);
}

std::vector<std::string> Pieces(const json& spec, const std::string& text) {
  auto pre = PreTokenizer::Create(spec);
  INFO(pre.status().ToString());
  REQUIRE(pre.ok());
  std::vector<std::string> out;
  (*pre)->Split(text, [&](std::string_view w) { out.emplace_back(w); });
  return out;
}

json SplitSpec(const std::string& literal, const std::string& behavior, bool invert = false) {
  return {{"type", "Split"},
          {"pattern", {{"String", literal}}},
          {"behavior", behavior},
          {"invert", invert}};
}

TEST_CASE("pre_tokenizer: Split behaviours", "[tokenizer]") {
  using V = std::vector<std::string>;
  const std::string s = "How are you doing?";
  CHECK(Pieces(SplitSpec(" ", "Removed"), s) == V{"How", "are", "you", "doing?"});
  CHECK(Pieces(SplitSpec(" ", "Isolated"), s) == V{"How", " ", "are", " ", "you", " ", "doing?"});
  CHECK(Pieces(SplitSpec(" ", "MergedWithPrevious"), s) == V{"How ", "are ", "you ", "doing?"});
  CHECK(Pieces(SplitSpec(" ", "MergedWithNext"), s) == V{"How", " are", " you", " doing?"});
  CHECK(Pieces(SplitSpec("-", "Contiguous"), "The-final--countdown") ==
        V{"The", "-", "final", "--", "countdown"});
  CHECK(Pieces(SplitSpec(" ", "Removed", true), s) == V{" ", " ", " "});
  CHECK(Pieces(SplitSpec(".", "Isolated"), "a.b*c") == V{"a", ".", "b*c"});  // literal, not regex
  const json digits = {{"type", "Digits"}, {"individual_digits", true}};
  CHECK(Pieces(digits, "ab123c") == V{"ab", "1", "2", "3", "c"});
  const json digits_joined = {{"type", "Digits"}, {"individual_digits", false}};
  CHECK(Pieces(digits_joined, "ab123c4") == V{"ab", "123", "c", "4"});
  const json gpt2 = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  CHECK(Pieces(gpt2, "Hello world's  end") == V{" Hello", " world", "'s", " ", " end"});
  const json seq = {{"type", "Sequence"},
                    {"pretokenizers",
                     {{{"type", "Split"},
                       {"pattern", {{"Regex", "\\p{N}{1,3}"}}},
                       {"behavior", "Isolated"},
                       {"invert", false}},
                      {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  CHECK(Pieces(seq, "ab12345") == V{"ab", "123", "45"});
}

// A tiny non-byte-level BPE over characters, to check merges and options.
json TinyTokenizer() {
  json vocab = {{"a", 0},   {"b", 1}, {"c", 2},     {"ab", 3}, {"bc", 4},
                {"abc", 5}, {" ", 6}, {"<unk>", 7}, {"é", 8},  {"x", 9}};
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens",
           {{{"id", 10},
             {"content", "[M]"},
             {"single_word", false},
             {"lstrip", true},
             {"rstrip", true},
             {"normalized", false},
             {"special", true}}}},
          {"normalizer", {{"type", "NFC"}}},
          {"pre_tokenizer", SplitSpec(" ", "Isolated")},
          {"post_processor", nullptr},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model",
           {{"type", "BPE"},
            {"unk_token", "<unk>"},
            {"vocab", vocab},
            {"merges", {"b c", "a b", "a bc"}}}}};
}

std::vector<int32_t> EncodeWith(const json& tj, const std::string& text) {
  auto t = Tokenizer::FromJson(tj.dump(), "");
  INFO(t.status().ToString());
  REQUIRE(t.ok());
  auto ids = (*t)->Encode(text, false);
  REQUIRE(ids.ok());
  return *ids;
}

TEST_CASE("tokenizer: BPE ranks, unk, NFC and lstrip/rstrip on a tiny file", "[tokenizer]") {
  using V = std::vector<int32_t>;
  const json tj = TinyTokenizer();
  CHECK(EncodeWith(tj, "abc") == V{5});  // b c (rank 0), then a bc (rank 2)
  CHECK(EncodeWith(tj, "ab") == V{3});
  CHECK(EncodeWith(tj, "abz") == V{3, 7});     // unknown char -> unk
  CHECK(EncodeWith(tj, "e\xCC\x81") == V{8});  // e + combining acute, NFC -> é
  // lstrip/rstrip take the spaces around [M] into the added token.
  CHECK(EncodeWith(tj, "a [M] b") == V{0, 10, 1});
  json fused = tj;
  fused["model"]["fuse_unk"] = true;
  CHECK(EncodeWith(fused, "azzx") == V{0, 7, 9});
  json pairs = tj;
  pairs["model"]["merges"] =
      json::array({json::array({"b", "c"}), json::array({"a", "b"}), json::array({"a", "bc"})});
  CHECK(EncodeWith(pairs, "abc") == V{5});
  json reordered = tj;  // a b first: "ab" + "c", and no "ab c" merge exists
  reordered["model"]["merges"] = {"a b", "b c", "a bc"};
  CHECK(EncodeWith(reordered, "abc") == V{3, 2});
  json ignore = reordered;
  ignore["model"]["ignore_merges"] = true;  // whole word in vocab wins
  CHECK(EncodeWith(ignore, "abc") == V{5});
}

TEST_CASE("tokenizer: unsupported components are refused by name", "[tokenizer]") {
  auto refused = [](json tj, const std::string& name) {
    auto t = Tokenizer::FromJson(tj.dump(), "");
    REQUIRE_FALSE(t.ok());
    INFO(t.status().ToString());
    CHECK(std::string(t.status().message()).find(name) != std::string::npos);
  };
  json tj = TinyTokenizer();
  tj["normalizer"] = {{"type", "Lowercase"}};
  refused(tj, "Lowercase");
  tj = TinyTokenizer();
  tj["model"]["type"] = "WordPiece";
  refused(tj, "WordPiece");
  tj = TinyTokenizer();
  tj["decoder"] = {{"type", "Metaspace"}};
  refused(tj, "Metaspace");
  tj = TinyTokenizer();
  tj["pre_tokenizer"] = {{"type", "Whitespace"}};
  refused(tj, "Whitespace");
  tj = TinyTokenizer();
  tj["post_processor"] = {{"type", "BertProcessing"}};
  refused(tj, "BertProcessing");
  tj = TinyTokenizer();
  tj["model"]["merges"] = {"a q"};
  refused(tj, "\"q\"");
  tj = TinyTokenizer();
  tj["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  refused(tj, "pre_tokenizer.pattern");
  CHECK_FALSE(Tokenizer::FromJson("{not json", "").ok());
  CHECK(Tokenizer::Load("/nonexistent").status().code() == absl::StatusCode::kNotFound);
}

TEST_CASE("tokenizer: TemplateProcessing adds its special tokens", "[tokenizer]") {
  json tj = TinyTokenizer();
  tj["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single",
       {{{"SpecialToken", {{"id", "[M]"}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"special_tokens", {{"[M]", {{"id", "[M]"}, {"ids", {10}}, {"tokens", {"[M]"}}}}}}};
  auto t = Tokenizer::FromJson(tj.dump(), "");
  REQUIRE(t.ok());
  CHECK(*(*t)->Encode("ab", true) == std::vector<int32_t>{10, 3});
  CHECK(*(*t)->Encode("ab", false) == std::vector<int32_t>{3});
}

}  // namespace
}  // namespace moegraph
