// Parses "host:port"; see host_port.h.
#include "server/config/host_port.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

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

std::string BindFailureReason(const HostPort& hp, const std::string& unknown) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(hp.port);
  if (int rc = getaddrinfo(hp.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return gai_strerror(rc);
  }
  std::string why = unknown;
  const int fd = socket(found->ai_family, found->ai_socktype, found->ai_protocol);
  if (fd >= 0) {
    const int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    if (bind(fd, found->ai_addr, found->ai_addrlen) != 0) why = std::strerror(errno);
    close(fd);
  } else {
    why = std::strerror(errno);
  }
  freeaddrinfo(found);
  return why;
}

}  // namespace moegraph
