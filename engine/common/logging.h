// Leveled logging to stderr: ERROR, WARN, INFO, plus VERBOSE for resource tracing
// (creation and destruction of every GPU resource is logged at VERBOSE).
#pragma once

#include <sstream>
#include <string_view>

namespace moegraph {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kVerbose = 3 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// Parses "error", "warn", "info", "verbose"; returns false on anything else.
bool ParseLogLevel(std::string_view text, LogLevel* out);

namespace internal {
class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};
}  // namespace internal

}  // namespace moegraph

#define MG_LOG(level)                                            \
  if (::moegraph::LogLevel::level > ::moegraph::GetLogLevel()) { \
  } else                                                         \
    ::moegraph::internal::LogMessage(::moegraph::LogLevel::level, __FILE__, __LINE__).stream()

#define LOG_ERROR MG_LOG(kError)
#define LOG_WARN MG_LOG(kWarn)
#define LOG_INFO MG_LOG(kInfo)
#define LOG_VERBOSE MG_LOG(kVerbose)
