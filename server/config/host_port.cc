// Parses "host:port"; see host_port.h.
#include "server/config/host_port.h"

#include <charconv>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace moegraph {
namespace {

bool IsHostNameChar(char c) { return absl::ascii_isalnum(c) || c == '.' || c == '-' || c == '_'; }
bool IsIpv6Char(char c) { return absl::ascii_isxdigit(c) || c == ':' || c == '.'; }

}  // namespace

absl::StatusOr<HostPort> ParseHostPort(absl::string_view address) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected host:port, got \"", address, "\" (", why, ")"));
  };
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) return bad("no port");
  absl::string_view host = address.substr(0, colon);
  const absl::string_view port_text = address.substr(colon + 1);

  if (!host.empty() && host.front() == '[') {
    if (host.size() < 2 || host.back() != ']') return bad("unbalanced brackets");
    host = host.substr(1, host.size() - 2);
    if (host.empty()) return bad("empty host");
    for (char c : host) {
      if (!IsIpv6Char(c)) return bad("not an IPv6 address inside the brackets");
    }
  } else {
    if (host.empty()) return bad("empty host");
    for (char c : host) {
      if (c == ':') return bad("an IPv6 host must be in brackets");
      if (!IsHostNameChar(c)) return bad("invalid character in host");
    }
  }

  if (port_text.empty()) return bad("empty port");
  int port = -1;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 0 || port > 65535) {
    return bad("port must be an integer in [0, 65535]");
  }
  return HostPort{std::string(host), port};
}

}  // namespace moegraph
