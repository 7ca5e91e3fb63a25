// "host:port" addresses as the daemon's config and its listeners take them, so
// that the YAML validation and the metrics exporter agree on one grammar.
#pragma once

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace moegraph {

struct HostPort {
  std::string host;  // a name, an IPv4 address, or an IPv6 address without its brackets
  int port = 0;      // 0..65535; 0 asks the listener for a free port
};

// Accepts "name:port", "1.2.3.4:port" and "[v6]:port". The error says what was
// wrong without naming a config key (callers add the key or flag).
absl::StatusOr<HostPort> ParseHostPort(absl::string_view address);

// Why a listener could not bind `hp` ("Address already in use", ...), learnt
// by binding it once more (with SO_REUSEADDR, as the listeners do); `unknown`
// when that bind succeeds. Listeners that fail without saying why use it.
std::string BindFailureReason(const HostPort& hp, const std::string& unknown);

}  // namespace moegraph
