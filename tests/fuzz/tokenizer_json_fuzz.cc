// libFuzzer target: any bytes as tokenizer.json (and, after a NUL byte, as
// tokenizer_config.json). Loading must fail cleanly or give a tokenizer that
// encodes and decodes without crashing.
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string_view config;
  if (const size_t nul = input.find('\0'); nul != std::string_view::npos) {
    config = input.substr(nul + 1);
    input = input.substr(0, nul);
  }
  auto tokenizer = moegraph::Tokenizer::FromJson(input, config);
  if (!tokenizer.ok()) return 0;
  const moegraph::Tokenizer& t = **tokenizer;
  for (std::string_view text : {"Hello, world! 123 4567", "  \n\t x<｜end▁of▁sentence｜>y",
                                "你好，世界 é e\xCC\x81 🌵", ""}) {
    auto ids = t.Encode(text, /*add_special_tokens=*/true);
    if (!ids.ok()) continue;
    (void)t.Decode(*ids, false);
    (void)t.Decode(*ids, true);
  }
  (void)t.TokenToId("a");
  (void)t.IsSpecial(0);
  return 0;
}
