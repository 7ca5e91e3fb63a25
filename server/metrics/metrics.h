// The daemon's Prometheus exporter on prometheus-cpp (Debian's
// prometheus-cpp-dev 1.0.1, core + pull): the families live in a
// prometheus::Registry (server_metrics.h registers them), MetricsHttpServer
// serves it at /metrics with prometheus-cpp's Exposer (civetweb).
//
// The Exposer adds three families of its own to every scrape, and we keep
// them: exposer_scrapes_total, exposer_transferred_bytes_total (counters) and
// exposer_request_latencies (a summary of scrape handling time, in
// microseconds). Its handler always serves them (prometheus-cpp has no switch
// for it), they are promtool-clean, and they tell an operator whether and how
// often the exporter is scraped. They are not moegraph_* names: dashboards
// and rules should not build on them (tests/python/test_promtool.py pins the
// set, so a library upgrade that changes it is noticed).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/metrics/basic_auth_credentials.h"

namespace prometheus {
class Exposer;
class Registry;
}  // namespace prometheus

namespace moegraph::metrics {

// Serves GET /metrics in the text format (Content-Type: text/plain;
// charset=utf-8, gzip when the client accepts it) from civetweb's threads.
// civetweb matches handlers by path prefix, so /metrics/anything serves the
// same; other paths get 404. Plain HTTP only: Debian 12's civetweb cannot
// serve TLS (server_config.cc, ValidateServerConfig, says why).
class MetricsHttpServer {
 public:
  // address "host:port" with an IPv4 address or a name (port 0 picks a free
  // one). INVALID_ARGUMENT for a malformed or IPv6 address (Debian's
  // civetweb is built without IPv6); UNAVAILABLE, naming the address and the
  // reason, when it cannot be bound. Never throws. With `basic_auth`, a
  // scrape without a user and password it matches gets 401 and a
  // WWW-Authenticate challenge (the server owns it).
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& address, std::shared_ptr<prometheus::Registry> registry,
      std::unique_ptr<const BasicAuthCredentials> basic_auth = nullptr);
  // Stops civetweb and joins its threads (up to ~2 s: civetweb's listener
  // polls with a 2 s timeout).
  ~MetricsHttpServer();
  int port() const { return port_; }

 private:
  MetricsHttpServer() = default;
  std::shared_ptr<prometheus::Registry> registry_;  // the Exposer holds a weak_ptr
  // Read by the Exposer's auth handler: declared before exposer_, so it
  // outlives civetweb's threads.
  std::unique_ptr<const BasicAuthCredentials> basic_auth_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

// The registry in the text exposition format, as /metrics serves it less the
// Exposer's own families (for tests and logs).
std::string Render(const prometheus::Registry& registry);

// Default latency buckets (seconds) for TTFT / end-to-end / queue time, and
// finer ones for inter-token latency and step time.
std::vector<double> LatencyBuckets();
std::vector<double> FineLatencyBuckets();

}  // namespace moegraph::metrics
