// The Prometheus exporter: exact text format, validation, concurrency, and
// the /metrics HTTP server answered over a real socket.
#include <httplib.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "server/metrics/metric_names.h"
#include "server/metrics/metrics.h"
#include "server/metrics/server_metrics.h"

namespace moegraph::metrics {
namespace {

template <typename T>
T* Must(absl::StatusOr<T*> added) {
  INFO(added.status().ToString());
  REQUIRE(added.ok());
  return *added;
}

// The message of a failed registration ("" when it succeeded).
template <typename T>
std::string Error(const absl::StatusOr<T*>& added) {
  return added.ok() ? "" : std::string(added.status().message());
}

TEST_CASE("metrics: counters and gauges render in the text format", "[metrics]") {
  Registry registry;
  Counter* stop = Must(registry.AddCounter("moegraph_requests_total", "Requests finished.",
                                           {{"finish_reason", "stop"}}));
  Counter* length = Must(registry.AddCounter("moegraph_requests_total", "Requests finished.",
                                             {{"finish_reason", "length"}}));
  Gauge* running = Must(registry.AddGauge("moegraph_requests_running", "Running requests."));
  stop->Inc();
  stop->Inc(2);
  length->Inc();
  running->Set(5);
  running->Add(-2);

  CHECK(registry.Render() ==
        "# HELP moegraph_requests_running Running requests.\n"
        "# TYPE moegraph_requests_running gauge\n"
        "moegraph_requests_running 3\n"
        "# HELP moegraph_requests_total Requests finished.\n"
        "# TYPE moegraph_requests_total counter\n"
        "moegraph_requests_total{finish_reason=\"length\"} 1\n"
        "moegraph_requests_total{finish_reason=\"stop\"} 3\n");
}

TEST_CASE("metrics: counters ignore negative and NaN increments", "[metrics]") {
  Counter counter;
  counter.Inc(1.5);
  counter.Inc(-1);
  counter.Inc(std::nan(""));
  CHECK(counter.Value() == 1.5);
}

TEST_CASE("metrics: histograms render cumulative buckets, +Inf, sum and count", "[metrics]") {
  Registry registry;
  Histogram* eager = Must(registry.AddHistogram("moegraph_step_duration_seconds", "Step time.",
                                                {0.25, 1, 2.5}, {{"mode", "eager"}}));
  Must(registry.AddHistogram("moegraph_step_duration_seconds", "Step time.", {0.25, 1, 2.5},
                             {{"mode", "full"}}));
  eager->Observe(0.125);
  eager->Observe(0.25);  // on a bound: counts in that bucket (le = less or equal)
  eager->Observe(0.5);
  eager->Observe(4);
  eager->Observe(std::nan(""));  // ignored

  CHECK(registry.Render() ==
        "# HELP moegraph_step_duration_seconds Step time.\n"
        "# TYPE moegraph_step_duration_seconds histogram\n"
        "moegraph_step_duration_seconds_bucket{mode=\"eager\",le=\"0.25\"} 2\n"
        "moegraph_step_duration_seconds_bucket{mode=\"eager\",le=\"1\"} 3\n"
        "moegraph_step_duration_seconds_bucket{mode=\"eager\",le=\"2.5\"} 3\n"
        "moegraph_step_duration_seconds_bucket{mode=\"eager\",le=\"+Inf\"} 4\n"
        "moegraph_step_duration_seconds_sum{mode=\"eager\"} 4.875\n"
        "moegraph_step_duration_seconds_count{mode=\"eager\"} 4\n"
        "moegraph_step_duration_seconds_bucket{mode=\"full\",le=\"0.25\"} 0\n"
        "moegraph_step_duration_seconds_bucket{mode=\"full\",le=\"1\"} 0\n"
        "moegraph_step_duration_seconds_bucket{mode=\"full\",le=\"2.5\"} 0\n"
        "moegraph_step_duration_seconds_bucket{mode=\"full\",le=\"+Inf\"} 0\n"
        "moegraph_step_duration_seconds_sum{mode=\"full\"} 0\n"
        "moegraph_step_duration_seconds_count{mode=\"full\"} 0\n");

  const Histogram::Snapshot snap = eager->Snap();
  CHECK(snap.upper_bounds == std::vector<double>{0.25, 1, 2.5});
  CHECK(snap.cumulative_counts == std::vector<uint64_t>{2, 3, 3, 4});
  CHECK(snap.count == 4);
}

TEST_CASE("metrics: a histogram without labels and with an explicit +Inf bound", "[metrics]") {
  Registry registry;
  Histogram* h = Must(registry.AddHistogram("moegraph_queue_time_seconds", "Queue time.",
                                            {0.5, std::numeric_limits<double>::infinity()}));
  h->Observe(0.5);
  h->Observe(7);
  CHECK(registry.Render() ==
        "# HELP moegraph_queue_time_seconds Queue time.\n"
        "# TYPE moegraph_queue_time_seconds histogram\n"
        "moegraph_queue_time_seconds_bucket{le=\"0.5\"} 1\n"
        "moegraph_queue_time_seconds_bucket{le=\"+Inf\"} 2\n"
        "moegraph_queue_time_seconds_sum 7.5\n"
        "moegraph_queue_time_seconds_count 2\n");
}

TEST_CASE("metrics: values are formatted so that Prometheus parses them", "[metrics]") {
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<std::pair<double, std::string>> cases = {
      {0, "0"},
      {-0.0, "0"},
      {3, "3"},
      {-42, "-42"},
      {1e6, "1000000"},                                  // no exponent on integers
      {123456789012345, "123456789012345"},              //
      {9007199254740993.0, "9007199254740992"},          // 2^53 + 1 rounds to 2^53
      {1.152921504606846976e18, "1152921504606846976"},  // 2^60, exact and shorter so
      {1e300, "1e+300"},
      {0.1, "0.1"},
      {2.5, "2.5"},
      {1.5e-7, "1.5e-07"},
      {inf, "+Inf"},
      {-inf, "-Inf"},
      {std::nan(""), "NaN"},
  };
  for (const auto& [value, text] : cases) {
    Registry registry;
    Must(registry.AddGauge("g", "A gauge."))->Set(value);
    const std::string rendered = registry.Render();
    INFO(value);
    CHECK(rendered.substr(rendered.rfind('\n', rendered.size() - 2) + 1) == "g " + text + "\n");
  }
}

TEST_CASE("metrics: help and label values are escaped", "[metrics]") {
  Registry registry;
  Must(registry.AddCounter("esc_total", "Back\\slash and\nnew line \"quotes\" stay.",
                           {{"path", "C:\\dir\n\"x\""}}))
      ->Inc();
  CHECK(registry.Render() ==
        "# HELP esc_total Back\\\\slash and\\nnew line \"quotes\" stay.\n"
        "# TYPE esc_total counter\n"
        "esc_total{path=\"C:\\\\dir\\n\\\"x\\\"\"} 1\n");
}

TEST_CASE("metrics: label order does not matter; children are found by labels", "[metrics]") {
  Registry registry;
  Counter* c = Must(registry.AddCounter("x_total", "X.", {{"b", "2"}, {"a", "1"}}));
  c->Inc(7);
  CHECK(registry.FindCounter("x_total", {{"a", "1"}, {"b", "2"}}) == c);
  CHECK(registry.FindCounter("x_total", {{"a", "1"}, {"b", "3"}}) == nullptr);
  CHECK(registry.FindGauge("x_total", {{"a", "1"}, {"b", "2"}}) == nullptr);  // wrong type
  CHECK(registry.FindHistogram("absent_seconds") == nullptr);
  CHECK(registry.Render() ==
        "# HELP x_total X.\n# TYPE x_total counter\nx_total{a=\"1\",b=\"2\"} 7\n");
  CHECK(Error(registry.AddCounter("x_total", "X.", {{"a", "1"}, {"b", "2"}})) ==
        "metric \"x_total{a=\"1\",b=\"2\"}\": already registered");
  CHECK(registry.AddCounter("x_total", "X.", {{"a", "1"}, {"b", "2"}}).status().code() ==
        absl::StatusCode::kAlreadyExists);
}

TEST_CASE("metrics: bad names, labels, help and buckets are refused", "[metrics]") {
  Registry r;
  const auto latency = LatencyBuckets();
  CHECK(Error(r.AddGauge("1abc", "H.")) ==
        "metric \"1abc\": name must match [a-zA-Z_:][a-zA-Z0-9_:]*");
  CHECK(Error(r.AddGauge("has-dash", "H.")) ==
        "metric \"has-dash\": name must match [a-zA-Z_:][a-zA-Z0-9_:]*");
  CHECK(Error(r.AddGauge("", "H.")) == "metric \"\": name must match [a-zA-Z_:][a-zA-Z0-9_:]*");
  CHECK(Error(r.AddCounter("moegraph_requests", "H.")) ==
        "metric \"moegraph_requests\": a counter's name must end in _total");
  CHECK(Error(r.AddGauge("moegraph_slots_total", "H.")) ==
        "metric \"moegraph_slots_total\": only counters may end in _total, this is a gauge");
  CHECK(Error(r.AddHistogram("x_total", "H.", latency)) ==
        "metric \"x_total\": only counters may end in _total, this is a histogram");
  CHECK(Error(r.AddGauge("x_count", "H.")) ==
        "metric \"x_count\": the suffix _count is reserved for histogram series");
  CHECK(Error(r.AddHistogram("x_bucket", "H.", latency)) ==
        "metric \"x_bucket\": the suffix _bucket is reserved for histogram series");
  CHECK(Error(r.AddGauge("x:y", "H.")).empty());  // colons are legal in metric names
  CHECK(Error(r.AddGauge("g", "")) == "metric \"g\": help is empty");

  CHECK(Error(r.AddGauge("g", "H.", {{"1x", "v"}})) ==
        "metric \"g\": label \"1x\": name must match [a-zA-Z_][a-zA-Z0-9_]*");
  CHECK(Error(r.AddGauge("g", "H.", {{"a:b", "v"}})) ==
        "metric \"g\": label \"a:b\": name must match [a-zA-Z_][a-zA-Z0-9_]*");
  CHECK(Error(r.AddGauge("g", "H.", {{"__name__", "v"}})) ==
        "metric \"g\": label \"__name__\": names starting with __ are reserved");
  CHECK(Error(r.AddGauge("g", "H.", {{"a", "1"}, {"a", "2"}})) ==
        "metric \"g\": label \"a\": given twice");
  CHECK(Error(r.AddHistogram("h_seconds", "H.", latency, {{"le", "1"}})) ==
        "metric \"h_seconds\": label \"le\": reserved for histogram buckets");
  CHECK(Error(r.AddGauge("g_le", "H.", {{"le", "1"}})).empty());  // only histograms reserve le

  CHECK(Error(r.AddHistogram("h_seconds", "H.", {1, 0.5})) ==
        "metric \"h_seconds\": buckets must be strictly ascending");
  CHECK(Error(r.AddHistogram("h_seconds", "H.", {1, 1})) ==
        "metric \"h_seconds\": buckets must be strictly ascending");
  CHECK(Error(r.AddHistogram("h_seconds", "H.", {std::nan("")})) ==
        "metric \"h_seconds\": buckets must be finite (+Inf is implied and may only come last)");
  CHECK(Error(r.AddHistogram("h_seconds", "H.", {std::numeric_limits<double>::infinity(), 1})) ==
        "metric \"h_seconds\": buckets must be finite (+Inf is implied and may only come last)");
}

TEST_CASE("metrics: a family keeps its type, help, label names and buckets", "[metrics]") {
  Registry r;
  Must(r.AddHistogram("h_seconds", "H.", {1, 2}, {{"mode", "a"}}));
  CHECK(Error(r.AddGauge("h_seconds", "H.")) ==
        "metric \"h_seconds\": already registered as a histogram");
  CHECK(Error(r.AddHistogram("h_seconds", "Other.", {1, 2}, {{"mode", "b"}})) ==
        "metric \"h_seconds\": already registered with another help text");
  CHECK(Error(r.AddHistogram("h_seconds", "H.", {1, 2}, {{"kind", "b"}})) ==
        "metric \"h_seconds\": already registered with another set of label names (mode)");
  CHECK(Error(r.AddHistogram("h_seconds", "H.", {1, 3}, {{"mode", "b"}})) ==
        "metric \"h_seconds\": already registered with another set of buckets");
  CHECK(Error(r.AddHistogram("h_seconds", "H.", {1, 2}, {{"mode", "b"}})).empty());
}

TEST_CASE("metrics: concurrent updates from many threads add up", "[metrics]") {
  Registry registry;
  Counter* counter = Must(registry.AddCounter("c_total", "C."));
  Gauge* gauge = Must(registry.AddGauge("g", "G."));
  Histogram* histogram = Must(registry.AddHistogram("h_seconds", "H.", {0.5}));
  constexpr int kThreads = 8;
  constexpr int kUpdates = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kUpdates; ++i) {
        counter->Inc();
        gauge->Add(t % 2 == 0 ? 2 : -1);
        histogram->Observe(i % 2 == 0 ? 0.25 : 1.0);
        if (i % 1000 == 0) (void)registry.Render();  // scrapes race with updates
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(counter->Value() == kThreads * kUpdates);
  CHECK(gauge->Value() == (kThreads / 2) * kUpdates * (2 - 1));
  const Histogram::Snapshot snap = histogram->Snap();
  CHECK(snap.count == uint64_t{kThreads} * kUpdates);
  CHECK(snap.cumulative_counts ==
        std::vector<uint64_t>{uint64_t{kThreads} * kUpdates / 2, uint64_t{kThreads} * kUpdates});
  CHECK(snap.sum == kThreads * kUpdates / 2 * (0.25 + 1.0));
}

TEST_CASE("metrics: bucket presets are ascending and valid", "[metrics]") {
  Registry registry;
  CHECK(registry.AddHistogram("a_seconds", "A.", LatencyBuckets()).ok());
  CHECK(registry.AddHistogram("b_seconds", "B.", FineLatencyBuckets()).ok());
}

TEST_CASE("metrics: the daemon's metric set registers once with the agreed names", "[metrics]") {
  Registry registry;
  absl::StatusOr<ServerMetrics> m = RegisterServerMetrics(&registry);
  REQUIRE(m.ok());
  m->requests.length->Inc(2);
  m->time_to_first_token->Observe(0.2);
  m->slots_capacity->Set(8);
  CHECK(registry.FindCounter(kRequestsTotal, {{kFinishReasonLabel, kFinishLength}})->Value() == 2);
  CHECK(registry.FindCounter(kRequestsTotal, {{kFinishReasonLabel, kFinishStop}}) ==
        m->requests.stop);
  CHECK(registry.FindCounter(kRequestsTotal, {{kFinishReasonLabel, kFinishAbort}}) ==
        m->requests.abort);
  CHECK(registry.FindCounter(kRequestsTotal, {{kFinishReasonLabel, kFinishError}}) ==
        m->requests.error);
  CHECK(registry.FindHistogram(kStepDurationSeconds, {{kStepModeLabel, kStepModeEager}}) ==
        m->step_duration_eager);
  const std::string text = registry.Render();
  for (const char* name :
       {kRequestsTotal, kTimeToFirstTokenSeconds, kInterTokenLatencySeconds,
        kRequestDurationSeconds, kQueueTimeSeconds, kStepDurationSeconds, kRequestsRunning,
        kRequestsWaiting, kSlotsUsed, kSlotsCapacity, kPromptTokensTotal, kGeneratedTokensTotal}) {
    INFO(name);
    CHECK(text.find(std::string("# TYPE ") + name + " ") != std::string::npos);
  }
  CHECK(text.find("moegraph_time_to_first_token_seconds_count 1\n") != std::string::npos);
  CHECK_FALSE(RegisterServerMetrics(&registry).ok());  // a second time clashes
}

TEST_CASE("metrics: the HTTP server serves /metrics with the text content type",
          "[metrics][http]") {
  Registry registry;
  Must(registry.AddCounter("moegraph_generated_tokens_total", "Tokens."))->Inc(12);
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Start("127.0.0.1:0", &registry);
  REQUIRE(server.ok());
  const int port = (*server)->port();
  REQUIRE(port > 0);

  httplib::Client client("127.0.0.1", port);
  httplib::Result metrics = client.Get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->status == 200);
  CHECK(metrics->get_header_value("Content-Type") == "text/plain; version=0.0.4; charset=utf-8");
  CHECK(metrics->body == registry.Render());
  CHECK(metrics->body.find("moegraph_generated_tokens_total 12\n") != std::string::npos);

  // Values are read at scrape time.
  registry.FindCounter("moegraph_generated_tokens_total")->Inc(1);
  httplib::Result again = client.Get("/metrics");
  REQUIRE(again);
  CHECK(again->body.find("moegraph_generated_tokens_total 13\n") != std::string::npos);

  httplib::Result other = client.Get("/");
  REQUIRE(other);
  CHECK(other->status == 404);
  httplib::Result near = client.Get("/metrics/x");
  REQUIRE(near);
  CHECK(near->status == 404);

  server->reset();  // stops and joins; the port is closed afterwards
  httplib::Client late("127.0.0.1", port);
  late.set_connection_timeout(1);
  CHECK_FALSE(late.Get("/metrics"));
}

TEST_CASE("metrics: bind failures and bad addresses name the address", "[metrics][http]") {
  Registry registry;
  auto first = MetricsHttpServer::Start("127.0.0.1:0", &registry);
  REQUIRE(first.ok());
  const std::string taken = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = MetricsHttpServer::Start(taken, &registry);
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().code() == absl::StatusCode::kUnavailable);
  CHECK(std::string(second.status().message()) ==
        "metrics: cannot listen on " + taken + ": Address already in use");

  auto bad = MetricsHttpServer::Start("localhost", &registry);
  REQUIRE_FALSE(bad.ok());
  CHECK(std::string(bad.status().message()) ==
        "metrics address: expected host:port, got \"localhost\" (no port)");
}

TEST_CASE("metrics: a server started and destroyed at once shuts down cleanly", "[metrics][http]") {
  Registry registry;
  for (int i = 0; i < 20; ++i) {
    auto server = MetricsHttpServer::Start("127.0.0.1:0", &registry);
    REQUIRE(server.ok());
  }
}

}  // namespace
}  // namespace moegraph::metrics
