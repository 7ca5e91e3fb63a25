// Our own Prometheus exporter (prometheus-cpp is not packaged in Debian 12):
// counters, gauges and histograms with label sets, rendered in the text
// exposition format 0.0.4, served on their own HTTP port at /metrics.
// All metric objects are thread-safe; updates are lock-free or take a short
// per-family lock. Names follow Prometheus conventions (moegraph_*, base
// units, counters end in _total) and are validated at registration.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace moegraph::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;  // ordered name=value pairs

class Counter {
 public:
  void Inc(double v = 1.0);  // v >= 0
  double Value() const;

 private:
  std::atomic<double> value_{0.0};
};

class Gauge {
 public:
  void Set(double v);
  void Add(double v);
  double Value() const;

 private:
  std::atomic<double> value_{0.0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);  // ascending, +Inf implied
  void Observe(double v);
  struct Snapshot {
    std::vector<double> upper_bounds;
    std::vector<uint64_t> cumulative_counts;  // one per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Snap() const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, non-cumulative, last = +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

// Families own their children; pointers returned stay valid for the
// registry's lifetime.
class Registry {
 public:
  Registry();
  ~Registry();  // out of line: Family is defined in metrics.cc
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Errors (InvalidArgument) on a bad name, a duplicate family, or a type clash.
  absl::StatusOr<Counter*> AddCounter(const std::string& name, const std::string& help,
                                      const Labels& labels = {});
  absl::StatusOr<Gauge*> AddGauge(const std::string& name, const std::string& help,
                                  const Labels& labels = {});
  absl::StatusOr<Histogram*> AddHistogram(const std::string& name, const std::string& help,
                                          std::vector<double> upper_bounds,
                                          const Labels& labels = {});
  // Text format 0.0.4: # HELP / # TYPE once per family, children sorted by labels.
  std::string Render() const;

 private:
  struct Family;
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Family>> families_;
};

// Serves GET /metrics (Content-Type: text/plain; version=0.0.4; charset=utf-8)
// from a background thread; 404 elsewhere.
class MetricsHttpServer {
 public:
  // address "host:port" (port 0 picks a free one). Fails with the reason when
  // the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& address,
                                                                  const Registry* registry);
  ~MetricsHttpServer();  // stops and joins
  int port() const;

 private:
  MetricsHttpServer() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Default latency buckets (seconds) for TTFT / end-to-end / queue time, and
// finer ones for inter-token latency and step time.
std::vector<double> LatencyBuckets();
std::vector<double> FineLatencyBuckets();

}  // namespace moegraph::metrics
