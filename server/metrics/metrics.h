// Our own Prometheus exporter (prometheus-cpp is not packaged in Debian 12):
// counters, gauges and histograms with label sets, rendered in the text
// exposition format 0.0.4, served on their own HTTP port at /metrics.
// All metric objects are thread-safe; updates are lock-free or take a short
// per-family lock. Names follow Prometheus conventions (moegraph_*, base
// units, counters end in _total) and are validated at registration.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace moegraph::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;  // ordered name=value pairs

class Counter {
 public:
  void Inc(double v = 1.0);  // v >= 0; a negative or NaN v is ignored (counters never go down)
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
  // Ascending finite bounds, +Inf implied (Registry::AddHistogram refuses others;
  // here they are sorted, and duplicates and infinities dropped).
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double v);  // a NaN v is ignored (it would poison the sum for good)
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

// A family is one metric name; its children are its label sets. Adding a name
// again with other label values adds a child to the family; its type, help,
// label names (and buckets, for histograms) must be the same. Families own
// their children; pointers returned stay valid for the registry's lifetime.
class Registry {
 public:
  Registry();
  ~Registry();  // out of line: Family is defined in metrics.cc
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Errors: InvalidArgument on a bad metric or label name (counters must end
  // in _total, others must not; no _bucket/_sum/_count suffixes; `le` is
  // reserved on histograms), empty help, bad buckets, or a clash with the
  // family's type, help, label names or buckets; AlreadyExists when that
  // exact child is there already. Label order does not matter.
  absl::StatusOr<Counter*> AddCounter(const std::string& name, const std::string& help,
                                      const Labels& labels = {});
  absl::StatusOr<Gauge*> AddGauge(const std::string& name, const std::string& help,
                                  const Labels& labels = {});
  absl::StatusOr<Histogram*> AddHistogram(const std::string& name, const std::string& help,
                                          std::vector<double> upper_bounds,
                                          const Labels& labels = {});
  // The child with exactly these labels, or nullptr (wrong type, or absent).
  Counter* FindCounter(const std::string& name, const Labels& labels = {}) const;
  Gauge* FindGauge(const std::string& name, const Labels& labels = {}) const;
  Histogram* FindHistogram(const std::string& name, const Labels& labels = {}) const;

  // Text format 0.0.4: # HELP / # TYPE once per family, families sorted by
  // name, children by their labels (label pairs sorted by label name).
  std::string Render() const;

 private:
  struct Family;
  template <typename T>
  absl::StatusOr<T*> Add(const std::string& name, const std::string& help, const Labels& labels,
                         std::vector<double> upper_bounds);
  template <typename T>
  T* Find(const std::string& name, const Labels& labels) const;

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Family>> families_;
};

// Serves GET /metrics (Content-Type: text/plain; version=0.0.4; charset=utf-8)
// from a background thread; 404 elsewhere.
class MetricsHttpServer {
 public:
  // address "host:port" (port 0 picks a free one). Fails with the reason when
  // the address cannot be bound. `registry` is not owned and must outlive the
  // server.
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
