// `moegraph tokenize`: encode or decode from the command line, check a golden
// file made with the Python `tokenizers` library, or measure encode speed.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/common/cli_registry.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace moegraph {
namespace {

constexpr char kUsage[] =
    "usage: moegraph tokenize --tokenizer DIR [options] [TEXT...]\n"
    "\n"
    "Encodes TEXT (joined with spaces) with DIR/tokenizer.json and prints the ids.\n"
    "\n"
    "options:\n"
    "  --tokenizer DIR      model directory holding tokenizer.json (required)\n"
    "  --add-special        apply the post-processor template / add_bos_token\n"
    "  --decode             TEXT is ids (spaces or commas); print the decoded text\n"
    "  --skip-special       with --decode, drop special tokens\n"
    "  --check FILE         check a golden file: a JSON list of {text, ids, decoded}\n"
    "                       (ids = encode(text, add_special_tokens=False), decoded =\n"
    "                       decode(ids, skip_special_tokens=False)); also checks that\n"
    "                       streaming the ids one by one gives the decoded text.\n"
    "                       Prints 'N passed, M failed'; exit 1 on any failure\n"
    "  --bench FILE...      single-thread encode throughput over the files' bytes\n"
    "                       (invalid UTF-8 lines are dropped), median of --runs\n"
    "  --runs N             timed runs for --bench after one warm-up (default 5)\n"
    "  --cold               --bench: a freshly loaded tokenizer (empty word cache) per run\n"
    "  --help               this text\n";

bool ReadWholeFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

std::string Escape(const std::string& s, size_t limit = 120) {
  std::string out;
  for (char c : s.substr(0, limit)) {
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        out += c;
    }
  }
  if (s.size() > limit) out += "...";
  return out;
}

std::string JoinIds(const std::vector<int32_t>& ids, size_t from, size_t to) {
  std::string out;
  for (size_t i = from; i < std::min(to, ids.size()); ++i) {
    if (!out.empty()) out += ' ';
    out += std::to_string(ids[i]);
  }
  return out;
}

int Check(const Tokenizer& tokenizer, const std::string& path) {
  std::string text;
  if (!ReadWholeFile(path, &text)) {
    std::fprintf(stderr, "tokenize: cannot read golden file %s\n", path.c_str());
    return 2;
  }
  nlohmann::json golden = nlohmann::json::parse(text, nullptr, false);
  if (golden.is_discarded() || !golden.is_array()) {
    std::fprintf(stderr, "tokenize: %s is not a JSON list of {text, ids, decoded}\n", path.c_str());
    return 2;
  }
  int passed = 0, failed = 0;
  constexpr int kShown = 5;
  for (size_t i = 0; i < golden.size(); ++i) {
    const auto& c = golden[i];
    if (!c.is_object() || !c.contains("text") || !c["text"].is_string() || !c.contains("ids") ||
        !c["ids"].is_array() || !c.contains("decoded") || !c["decoded"].is_string()) {
      std::fprintf(stderr, "tokenize: %s[%zu] lacks text, ids or decoded\n", path.c_str(), i);
      return 2;
    }
    const std::string input = c["text"].get<std::string>();
    const std::vector<int32_t> want = c["ids"].get<std::vector<int32_t>>();
    const std::string want_text = c["decoded"].get<std::string>();
    std::vector<std::string> problems;
    auto got = tokenizer.Encode(input, /*add_special_tokens=*/false);
    if (!got.ok()) {
      problems.push_back("encode failed: " + std::string(got.status().message()));
    } else if (*got != want) {
      size_t k = 0;
      while (k < want.size() && k < got->size() && want[k] == (*got)[k]) ++k;
      const size_t from = k > 3 ? k - 3 : 0;
      problems.push_back("ids differ at index " + std::to_string(k) + " (" +
                         std::to_string(got->size()) + " vs " + std::to_string(want.size()) +
                         " ids)\n      want ..." + JoinIds(want, from, k + 6) + "\n      got  ..." +
                         JoinIds(*got, from, k + 6));
    }
    const std::string decoded = tokenizer.Decode(want, /*skip_special_tokens=*/false);
    if (decoded != want_text) {
      problems.push_back("decode differs\n      want \"" + Escape(want_text) + "\"\n      got  \"" +
                         Escape(decoded) + "\"");
    }
    StreamingDetokenizer stream(tokenizer, /*skip_special_tokens=*/false);
    std::string streamed;
    for (int32_t id : want) streamed += stream.Add(id);
    streamed += stream.Flush();
    if (streamed != want_text) {
      problems.push_back("streamed text differs\n      want \"" + Escape(want_text) +
                         "\"\n      got  \"" + Escape(streamed) + "\"");
    }
    if (problems.empty()) {
      ++passed;
      continue;
    }
    if (++failed <= kShown) {
      std::printf("FAIL case %zu: \"%s\"\n", i, Escape(input).c_str());
      for (const auto& p : problems) std::printf("    %s\n", p.c_str());
    }
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

// Warm (default): one warm-up pass fills the word cache, as in a long-running
// server, then the same text is timed again. Cold: every timed run uses a
// freshly loaded tokenizer, so the cache fills only within the run (the fair
// comparison with one `tokenizers` encode call over new text).
int Bench(const std::string& dir, const Tokenizer& tokenizer, const std::vector<std::string>& files,
          int runs, bool cold) {
  // Lines are encoded one by one, as requests would be; lines that are not
  // valid UTF-8 are skipped so every byte timed is really tokenized.
  std::vector<std::string> lines;
  size_t bytes = 0;
  for (const auto& f : files) {
    std::string content;
    if (!ReadWholeFile(f, &content)) {
      std::fprintf(stderr, "tokenize: cannot read %s\n", f.c_str());
      return 2;
    }
    std::string chunk;
    std::istringstream in(content);
    std::string line;
    while (std::getline(in, line)) {
      line += '\n';
      if (!tokenizer.Encode(line, false).ok()) continue;
      chunk += line;
      if (chunk.size() >= 4096) {
        bytes += chunk.size();
        lines.push_back(std::move(chunk));
        chunk.clear();
      }
    }
    if (!chunk.empty()) {
      bytes += chunk.size();
      lines.push_back(std::move(chunk));
    }
  }
  auto run_once = [&](const Tokenizer& tok, size_t* ids) {
    const auto t0 = std::chrono::steady_clock::now();
    size_t n = 0;
    for (const auto& l : lines) n += tok.Encode(l, false)->size();
    *ids = n;
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  size_t ids = 0;
  std::vector<double> times;
  if (cold) {
    for (int r = 0; r < runs; ++r) {
      auto fresh = Tokenizer::Load(dir);
      if (!fresh.ok()) {
        std::fprintf(stderr, "tokenize: %s\n", std::string(fresh.status().message()).c_str());
        return 1;
      }
      times.push_back(run_once(**fresh, &ids));
    }
  } else {
    run_once(tokenizer, &ids);  // warm-up
    for (int r = 0; r < runs; ++r) times.push_back(run_once(tokenizer, &ids));
  }
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  std::printf(
      "%zu bytes in %zu chunks of ~4 KiB, %zu ids; %s cache, median of %d runs: %.3f s = %.2f "
      "MB/s (min %.3f s, max %.3f s)\n",
      bytes, lines.size(), ids, cold ? "cold" : "warm", runs, median, bytes / median / 1e6,
      times.front(), times.back());
  return 0;
}

int RunTokenize(int argc, char** argv) {
  std::string dir, check;
  bool decode = false, skip_special = false, add_special = false, bench = false, cold = false;
  int runs = 5;
  std::vector<std::string> rest;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* flag) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "tokenize: %s needs a value\n", flag);
        return nullptr;
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--tokenizer") {
      const char* v = value("--tokenizer");
      if (!v) return 2;
      dir = v;
    } else if (a == "--check") {
      const char* v = value("--check");
      if (!v) return 2;
      check = v;
    } else if (a == "--runs") {
      const char* v = value("--runs");
      if (!v) return 2;
      runs = std::atoi(v);
      if (runs < 1) {
        std::fprintf(stderr, "tokenize: --runs must be >= 1\n");
        return 2;
      }
    } else if (a == "--decode") {
      decode = true;
    } else if (a == "--skip-special") {
      skip_special = true;
    } else if (a == "--add-special") {
      add_special = true;
    } else if (a == "--cold") {
      cold = true;
    } else if (a == "--bench") {
      bench = true;
    } else if (a.size() > 1 && a[0] == '-' && a[1] == '-' && a.size() > 2) {
      std::fprintf(stderr, "tokenize: unknown option %s\n\n%s", a.c_str(), kUsage);
      return 2;
    } else {
      rest.push_back(a);
    }
  }
  if (dir.empty()) {
    std::fprintf(stderr, "tokenize: --tokenizer DIR is required\n\n%s", kUsage);
    return 2;
  }
  auto tokenizer = Tokenizer::Load(dir);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "tokenize: %s\n", std::string(tokenizer.status().message()).c_str());
    return 1;
  }
  if (!check.empty()) return Check(**tokenizer, check);
  if (bench) {
    if (rest.empty()) {
      std::fprintf(stderr, "tokenize: --bench needs input files\n");
      return 2;
    }
    return Bench(dir, **tokenizer, rest, runs, cold);
  }
  std::string text;
  for (size_t i = 0; i < rest.size(); ++i) text += (i ? " " : "") + rest[i];
  if (decode) {
    std::vector<int32_t> ids;
    for (char& c : text) {
      if (c == ',') c = ' ';
    }
    std::istringstream in(text);
    std::string tok;
    while (in >> tok) {
      char* end = nullptr;
      const long v = std::strtol(tok.c_str(), &end, 10);
      if (*end != '\0') {
        std::fprintf(stderr, "tokenize: --decode expects integer ids, got '%s'\n", tok.c_str());
        return 2;
      }
      ids.push_back(static_cast<int32_t>(v));
    }
    std::printf("%s\n", (*tokenizer)->Decode(ids, skip_special).c_str());
    return 0;
  }
  auto ids = (*tokenizer)->Encode(text, add_special);
  if (!ids.ok()) {
    std::fprintf(stderr, "tokenize: %s\n", std::string(ids.status().message()).c_str());
    return 1;
  }
  std::string out;
  for (int32_t id : *ids) out += (out.empty() ? "" : " ") + std::to_string(id);
  std::printf("%s\n", out.c_str());
  return 0;
}

}  // namespace
}  // namespace moegraph

MOEGRAPH_CLI_COMMAND(
    tokenize, "tokenize",
    "tokenize --tokenizer DIR [--decode] [--check FILE] [--bench FILE...] [TEXT...]",
    "encode/decode text with tokenizer.json, check golden files, bench", &moegraph::RunTokenize);
