// MetricsHttpServer over prometheus::Exposer, and the text rendering used by
// tests.
#include "server/metrics/metrics.h"

#include <dlfcn.h>
#include <pthread.h>

#include <algorithm>

#include <cerrno>
#include <cstring>
#include <exception>

#include "absl/strings/str_cat.h"
#include "engine/common/logging.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
#include "server/config/host_port.h"

// civetweb (under prometheus-cpp's Exposer) starts its threads with 100 KiB
// stacks, and glibc refuses (EINVAL) a stack smaller than the process's
// static TLS: cuBLASLt alone holds 92 KiB of it, so in the CUDA build every
// civetweb thread, and the metrics server, failed to start. Interposing
// pthread_attr_setstacksize raises such requests to 1 MiB (virtual memory,
// committed only as used) for every caller in the process.
extern "C" int pthread_attr_setstacksize(pthread_attr_t* attr, size_t size) {
  using Fn = int (*)(pthread_attr_t*, size_t);
  static const Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "pthread_attr_setstacksize"));
  if (real == nullptr) return ENOSYS;
  return real(attr, std::max<size_t>(size, size_t{1} << 20));
}

namespace moegraph::metrics {
namespace {}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& address, std::shared_ptr<prometheus::Registry> registry,
    std::unique_ptr<const BasicAuthCredentials> basic_auth) {
  absl::StatusOr<HostPort> host_port = ParseHostPort(address);
  if (!host_port.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address: ", host_port.status().message()));
  }
  if (host_port->host.find(':') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics address: ", address,
        ": IPv6 is not supported (the Debian civetweb under prometheus-cpp is built without "
        "it); use an IPv4 address such as 127.0.0.1 or 0.0.0.0"));
  }
  std::unique_ptr<MetricsHttpServer> self(new MetricsHttpServer());
  self->registry_ = std::move(registry);
  self->basic_auth_ = std::move(basic_auth);
  try {
    // civetweb serves one connection per worker thread: with two, two idle
    // connections blocked every scrape. Eight threads, and a connection that
    // sends nothing (or half a request) for 3 s is dropped, so holding them
    // all costs a client more connections than a scrape waits for.
    self->exposer_ = std::make_unique<prometheus::Exposer>(std::vector<std::string>{
        "listening_ports", host_port->host + ":" + std::to_string(host_port->port), "num_threads",
        "8", "request_timeout_ms", "3000"});
  } catch (const std::exception& e) {
    LOG_VERBOSE << "metrics: civetweb: " << e.what();
    return absl::UnavailableError(
        absl::StrCat("metrics: cannot listen on ", address, ": ",
                     BindFailureReason(*host_port, "the HTTP server could not start")));
  }
  const std::vector<int> ports = self->exposer_->GetListeningPorts();
  self->port_ = ports.empty() ? host_port->port : ports.front();
  // The auth handler first: registering the collectable creates /metrics,
  // and it must never answer unauthenticated.
  if (self->basic_auth_ != nullptr) {
    const BasicAuthCredentials* auth = self->basic_auth_.get();
    self->exposer_->RegisterAuth(
        [auth](const std::string& user, const std::string& password) {
          return auth->Matches(user, password);
        },
        "moegraph metrics");
  }
  self->exposer_->RegisterCollectable(self->registry_);
  LOG_VERBOSE << "metrics: serving http://" << host_port->host << ":" << self->port_ << "/metrics";
  return self;
}

MetricsHttpServer::~MetricsHttpServer() = default;

std::string Render(const prometheus::Registry& registry) {
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

std::vector<double> LatencyBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
}

std::vector<double> FineLatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015,
          0.02,   0.03,    0.05,   0.075, 0.1,   0.25,  0.5,   1,     2.5};
}

}  // namespace moegraph::metrics
