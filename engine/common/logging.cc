#include "engine/common/logging.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace moegraph {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::mutex g_mu;
const char* LevelTag(LogLevel l) {
  switch (l) {
    case LogLevel::kError:
      return "E";
    case LogLevel::kWarn:
      return "W";
    case LogLevel::kInfo:
      return "I";
    case LogLevel::kVerbose:
      return "V";
  }
  return "?";
}
}  // namespace

void SetLogLevel(LogLevel level) { g_level = static_cast<int>(level); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(g_level.load()); }

bool ParseLogLevel(std::string_view text, LogLevel* out) {
  if (text == "error")
    *out = LogLevel::kError;
  else if (text == "warn")
    *out = LogLevel::kWarn;
  else if (text == "info")
    *out = LogLevel::kInfo;
  else if (text == "verbose")
    *out = LogLevel::kVerbose;
  else
    return false;
  return true;
}

namespace internal {
LogMessage::LogMessage(LogLevel level, const char* file, int line) : level_(level) {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  std::string_view f(file);
  if (auto pos = f.rfind('/'); pos != std::string_view::npos) f = f.substr(pos + 1);
  char msbuf[8];
  std::snprintf(msbuf, sizeof(msbuf), ".%03dZ", static_cast<int>(ms));
  stream_ << LevelTag(level) << " " << buf << msbuf << " " << f << ":" << line << "] ";
}
LogMessage::~LogMessage() {
  stream_ << "\n";
  std::lock_guard<std::mutex> lock(g_mu);
  std::fputs(stream_.str().c_str(), stderr);
  (void)level_;
}
}  // namespace internal
}  // namespace moegraph
