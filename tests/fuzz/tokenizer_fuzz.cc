// libFuzzer target: any bytes through Encode, Decode and the streaming
// detokenizer of the dsv4-tiny tokenizer. Checks, besides not crashing, that
// valid text round-trips exactly and that streaming equals Decode.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/tokenizer/fast_patterns.h"
#include "engine/tokenizer/onig_regex.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace {

const moegraph::Tokenizer* g_tokenizer = nullptr;

// DeepSeek's split regexes, each as Oniguruma and as the hand-written matcher.
struct PatternPair {
  std::unique_ptr<moegraph::OnigRegex> onig;
  std::unique_ptr<moegraph::FastPattern> fast;
};
std::vector<PatternPair>* g_patterns = nullptr;

}  // namespace

// MOEGRAPH_TOKENIZER_DIR picks another model directory.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* dir = std::getenv("MOEGRAPH_TOKENIZER_DIR");
#ifdef MOEGRAPH_SOURCE_DIR
  const std::string fallback = std::string(MOEGRAPH_SOURCE_DIR) + "/tests/fixtures/dsv4-tiny";
#else
  const std::string fallback = "tests/fixtures/dsv4-tiny";
#endif
  auto tokenizer = moegraph::Tokenizer::Load(dir != nullptr ? dir : fallback);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "tokenizer_fuzz: %s\n", tokenizer.status().ToString().c_str());
    std::abort();
  }
  g_tokenizer = tokenizer->release();
  g_patterns = new std::vector<PatternPair>();
  for (const char* p : {"\\p{N}{1,3}", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
                        "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|"
                        "[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|"
                        "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}) {
    auto onig = moegraph::OnigRegex::Compile(p);
    auto fast = moegraph::FastPattern::For(p);
    if (!onig.ok() || fast == nullptr) std::abort();
    g_patterns->push_back({*std::move(onig), std::move(fast)});
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const moegraph::Tokenizer& t = *g_tokenizer;
  const std::string text(reinterpret_cast<const char*>(data), size);

  if (moegraph::utf8::IsValid(text)) {
    for (const auto& p : *g_patterns) {
      std::vector<std::pair<size_t, size_t>> want, got;
      p.onig->FindAll(text, &want);
      p.fast->FindAll(text, &got);
      if (want != got) std::abort();
    }
  }

  auto ids = t.Encode(text, /*add_special_tokens=*/size % 2 == 0);
  if (ids.ok()) {
    // Byte-level BPE with no normalizer loses nothing.
    std::vector<int32_t> body = *ids;
    if (size % 2 == 0 && t.add_bos() && !body.empty()) body.erase(body.begin());
    if (t.Decode(body, false) != text) std::abort();
  } else if (moegraph::utf8::IsValid(text)) {
    std::abort();  // only invalid UTF-8 may be refused
  }

  // The same bytes read as ids (any values, negative and huge included).
  std::vector<int32_t> raw_ids(size / 4);
  if (!raw_ids.empty()) std::memcpy(raw_ids.data(), data, raw_ids.size() * 4);
  for (auto& id : raw_ids) id %= t.vocab_size() + 8;  // mostly known ids, some unknown/negative
  for (bool skip : {false, true}) {
    const std::string decoded = t.Decode(raw_ids, skip);
    if (!moegraph::utf8::IsValid(decoded)) std::abort();
    moegraph::StreamingDetokenizer stream(t, skip);
    std::string streamed;
    for (int32_t id : raw_ids) {
      std::string delta = stream.Add(id);
      if (!moegraph::utf8::IsValid(delta)) std::abort();
      streamed += delta;
    }
    streamed += stream.Flush();
    if (streamed != decoded) std::abort();
  }
  return 0;
}
