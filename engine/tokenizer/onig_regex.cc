// Oniguruma's compile and free must not run concurrently (they touch global
// tables), so they take one process-wide lock; onig_search only reads the
// compiled program and runs in parallel.
#include "engine/tokenizer/onig_regex.h"

#include <oniguruma.h>

#include <mutex>

#include "absl/strings/str_cat.h"

namespace moegraph {
namespace {

std::mutex& OnigLock() {
  static std::mutex mu;
  return mu;
}

void InitializeOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
  });
}

struct RegionDeleter {
  void operator()(OnigRegion* r) const { onig_region_free(r, 1); }
};

OnigRegion* ThreadRegion() {
  thread_local std::unique_ptr<OnigRegion, RegionDeleter> region(onig_region_new());
  return region.get();
}

}  // namespace

absl::StatusOr<std::unique_ptr<OnigRegex>> OnigRegex::Compile(std::string_view pattern) {
  InitializeOnce();
  std::unique_ptr<OnigRegex> re(new OnigRegex());
  regex_t* reg = nullptr;
  OnigErrorInfo einfo;
  const auto* p = reinterpret_cast<const OnigUChar*>(pattern.data());
  int rc;
  {
    std::lock_guard<std::mutex> lock(OnigLock());
    rc = onig_new(&reg, p, p + pattern.size(), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8,
                  ONIG_SYNTAX_DEFAULT, &einfo);
  }
  if (rc != ONIG_NORMAL) {
    OnigUChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
    onig_error_code_to_str(msg, rc, &einfo);
    return absl::InvalidArgumentError(absl::StrCat(
        "regex '", std::string(pattern), "' does not compile: ", reinterpret_cast<char*>(msg)));
  }
  re->regex_ = reg;
  return re;
}

absl::StatusOr<std::unique_ptr<OnigRegex>> OnigRegex::CompileLiteral(std::string_view literal) {
  std::string escaped;
  for (char c : literal) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
      if (u < 0x20 || u == 0x7F) {
        static constexpr char kHex[] = "0123456789abcdef";
        escaped += "\\x";
        escaped += kHex[u >> 4];
        escaped += kHex[u & 15];
        continue;
      }
      escaped += '\\';
    }
    escaped += c;
  }
  return Compile(escaped);
}

OnigRegex::~OnigRegex() {
  if (regex_ != nullptr) {
    std::lock_guard<std::mutex> lock(OnigLock());
    onig_free(static_cast<regex_t*>(regex_));
  }
}

void OnigRegex::FindAll(std::string_view text,
                        std::vector<std::pair<size_t, size_t>>* matches) const {
  auto* reg = static_cast<regex_t*>(regex_);
  OnigRegion* region = ThreadRegion();
  const auto* str = reinterpret_cast<const OnigUChar*>(text.data());
  const auto* end = str + text.size();
  size_t search_from = 0;
  bool have_last = false;
  size_t last_end = 0;
  while (search_from <= text.size()) {
    onig_region_clear(region);
    const int r = onig_search(reg, str, end, str + search_from, end, region, ONIG_OPTION_NONE);
    if (r < 0) break;  // ONIG_MISMATCH, or a resource limit: no further match
    const auto s = static_cast<size_t>(region->beg[0]);
    const auto e = static_cast<size_t>(region->end[0]);
    if (s == e && have_last && last_end == e) {
      // Step over one character so an empty match cannot repeat forever.
      if (search_from >= text.size()) break;
      size_t step = 1;
      const auto lead = static_cast<unsigned char>(text[search_from]);
      if (lead >= 0xC0) step = lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
      search_from += step;
      continue;
    }
    matches->emplace_back(s, e);
    search_from = e;
    have_last = true;
    last_end = e;
  }
}

std::pair<size_t, size_t> OnigRegex::Find(std::string_view text) const {
  auto* reg = static_cast<regex_t*>(regex_);
  OnigRegion* region = ThreadRegion();
  onig_region_clear(region);
  const auto* str = reinterpret_cast<const OnigUChar*>(text.data());
  const auto* end = str + text.size();
  const int r = onig_search(reg, str, end, str, end, region, ONIG_OPTION_NONE);
  if (r < 0) return {std::string_view::npos, std::string_view::npos};
  return {static_cast<size_t>(region->beg[0]), static_cast<size_t>(region->end[0])};
}

}  // namespace moegraph
