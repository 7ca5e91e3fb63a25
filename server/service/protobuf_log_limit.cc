#include "server/service/protobuf_log_limit.h"

#include <google/protobuf/stubs/logging.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "engine/common/logging.h"

namespace moegraph {
namespace {

std::mutex mu;
int limit = 0;                                 // guarded by mu
std::chrono::steady_clock::time_point window;  // start of the current minute; guarded by mu
int lines_in_window = 0;                       // guarded by mu
uint64_t suppressed = 0;                       // guarded by mu

// Escapes what a client may have put in the line (protobuf quotes field
// names, not values, but the text is not ours).
std::string Printable(const std::string& message) {
  std::string out;
  for (const char c : message) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) {
      out += c;
    } else {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

void Handler(google::protobuf::LogLevel level, const char* /*filename*/, int /*line*/,
             const std::string& message) {
  uint64_t dropped = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    const auto now = std::chrono::steady_clock::now();
    if (now - window >= std::chrono::minutes(1)) {
      window = now;
      lines_in_window = 0;
    }
    if (lines_in_window >= limit) {
      ++suppressed;
      return;
    }
    ++lines_in_window;
    dropped = suppressed;
    suppressed = 0;
  }
  const std::string text = dropped == 0 ? "libprotobuf: " + Printable(message)
                                        : "libprotobuf (" + std::to_string(dropped) +
                                              " earlier lines suppressed): " + Printable(message);
  switch (level) {
    case google::protobuf::LOGLEVEL_INFO:
      LOG_VERBOSE << text;
      break;
    case google::protobuf::LOGLEVEL_WARNING:
      LOG_WARN << text;
      break;
    default:
      LOG_ERROR << text;
      break;
  }
}

}  // namespace

void InstallProtobufLogLimit(int lines_per_minute) {
  {
    std::lock_guard<std::mutex> lock(mu);
    limit = lines_per_minute;
    window = std::chrono::steady_clock::now();
  }
  google::protobuf::SetLogHandler(&Handler);
}

}  // namespace moegraph
