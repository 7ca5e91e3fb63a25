// Interim: minimal metrics objects (no exporter) until server/metrics lands.
#include "server/metrics/metrics.h"

namespace moegraph::metrics {

void Counter::Inc(double v) { value_.fetch_add(v); }
double Counter::Value() const { return value_.load(); }
void Gauge::Set(double v) { value_.store(v); }
void Gauge::Add(double v) { value_.fetch_add(v); }
double Gauge::Value() const { return value_.load(); }

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}
void Histogram::Observe(double v) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}
Histogram::Snapshot Histogram::Snap() const {
  std::lock_guard<std::mutex> lock(mu_);
  Snapshot s;
  s.upper_bounds = bounds_;
  uint64_t c = 0;
  for (uint64_t n : counts_) s.cumulative_counts.push_back(c += n);
  s.sum = sum_;
  s.count = count_;
  return s;
}

struct Registry::Family {
  std::vector<std::unique_ptr<Counter>> counters;
  std::vector<std::unique_ptr<Gauge>> gauges;
  std::vector<std::unique_ptr<Histogram>> histograms;
};

Registry::Registry() = default;
Registry::~Registry() = default;

absl::StatusOr<Counter*> Registry::AddCounter(const std::string& name, const std::string&,
                                              const Labels&) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& f = families_[name];
  if (!f) f = std::make_unique<Family>();
  f->counters.push_back(std::make_unique<Counter>());
  return f->counters.back().get();
}
absl::StatusOr<Gauge*> Registry::AddGauge(const std::string& name, const std::string&,
                                          const Labels&) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& f = families_[name];
  if (!f) f = std::make_unique<Family>();
  f->gauges.push_back(std::make_unique<Gauge>());
  return f->gauges.back().get();
}
absl::StatusOr<Histogram*> Registry::AddHistogram(const std::string& name, const std::string&,
                                                  std::vector<double> upper_bounds, const Labels&) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& f = families_[name];
  if (!f) f = std::make_unique<Family>();
  f->histograms.push_back(std::make_unique<Histogram>(std::move(upper_bounds)));
  return f->histograms.back().get();
}
std::string Registry::Render() const { return ""; }

struct MetricsHttpServer::Impl {};
absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(const std::string&,
                                                                            const Registry*) {
  return absl::UnimplementedError("the /metrics exporter is not merged yet");
}
MetricsHttpServer::~MetricsHttpServer() = default;
int MetricsHttpServer::port() const { return 0; }

std::vector<double> LatencyBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}
std::vector<double> FineLatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};
}

}  // namespace moegraph::metrics
