// The Prometheus exporter on prometheus-cpp: the daemon's families with their
// names, labels and buckets in the text format, the scheduler observer that
// feeds them, and the /metrics HTTP server answered over a real socket.
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "prometheus/registry.h"
#include "server/daemon/scheduler_metrics.h"
#include "server/metrics/metric_names.h"
#include "server/metrics/metrics.h"
#include "server/metrics/server_metrics.h"
#include "tests/unit/temp_dir.h"

namespace moegraph::metrics {
namespace {

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The sample lines of `name` (exact name, any labels) in a rendering.
std::vector<std::string> SampleLines(const std::string& text, const std::string& name) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < text.size()) {
    const size_t end = text.find('\n', at);
    const std::string line = text.substr(at, end - at);
    if (line.rfind(name + " ", 0) == 0 || line.rfind(name + "{", 0) == 0) out.push_back(line);
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return out;
}

// prometheus-cpp keeps a family's children unordered: compare them sorted.
std::vector<std::string> Sorted(std::vector<std::string> lines) {
  std::sort(lines.begin(), lines.end());
  return lines;
}

struct HttpResponse {
  int status = 0;  // 0: no connection
  std::string headers;
  std::string body;
};

// GET http://127.0.0.1:port/path with HTTP/1.0 (the server closes after it);
// `headers`: extra "Name: value\r\n" lines.
HttpResponse HttpGet(int port, const std::string& path, const std::string& headers = "") {
  HttpResponse r;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return r;
  }
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n" + headers + "\r\n";
  REQUIRE(send(fd, request.data(), request.size(), 0) == static_cast<ssize_t>(request.size()));
  std::string reply;
  char buf[4096];
  for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) reply.append(buf, n);
  close(fd);
  const size_t split = reply.find("\r\n\r\n");
  REQUIRE(split != std::string::npos);
  r.headers = reply.substr(0, split + 2);
  r.body = reply.substr(split + 4);
  REQUIRE(r.headers.rfind("HTTP/1.", 0) == 0);
  r.status = std::stoi(r.headers.substr(9, 3));
  return r;
}

TEST_CASE("metrics: the daemon's families render with their names, labels and buckets",
          "[metrics]") {
  prometheus::Registry registry;
  absl::StatusOr<ServerMetrics> m = RegisterServerMetrics(&registry);
  REQUIRE(m.ok());
  m->requests.length->Increment(2);
  m->time_to_first_token->Observe(0.2);
  m->slots_capacity->Set(8);
  m->prompt_tokens->Increment(12);
  const std::string text = Render(registry);

  // Every family once, with its type; the step histogram appears with its first step.
  const std::vector<std::pair<const char*, const char*>> families = {
      {kRequestsTotal, "counter"},
      {kRequestsRejectedTotal, "counter"},
      {kTimeToFirstTokenSeconds, "histogram"},
      {kInterTokenLatencySeconds, "histogram"},
      {kRequestDurationSeconds, "histogram"},
      {kQueueTimeSeconds, "histogram"},
      {kRequestsRunning, "gauge"},
      {kRequestsWaiting, "gauge"},
      {kSlotsUsed, "gauge"},
      {kSlotsCapacity, "gauge"},
      {kStatePoolTokensCapacity, "gauge"},
      {kStatePoolTokensReserved, "gauge"},
      {kStatePoolTokensUsed, "gauge"},
      {kStatePoolPagesCapacity, "gauge"},
      {kStatePoolPagesReserved, "gauge"},
      {kStatePoolPagesUsed, "gauge"},
      {kRequestMaxTokens, "gauge"},
      {kPromptTokensTotal, "counter"},
      {kGeneratedTokensTotal, "counter"},
      {kPrefillTokensTotal, "counter"},
      {kDecodeTokensTotal, "counter"},
      {kStepsTotal, "counter"},
      {kEngineStepSecondsTotal, "counter"},
      {kSchedulerOverheadSecondsTotal, "counter"},
  };
  for (const auto& [name, type] : families) {
    INFO(name);
    CHECK(Contains(text, std::string("\n# TYPE ") + name + " " + type + "\n"));
  }
  // Families with labels and no child yet render nothing: they appear with
  // their first step, graph replay or device report.
  CHECK_FALSE(Contains(text, kStepDurationSeconds));
  CHECK_FALSE(Contains(text, kGraphReplaysTotal));
  CHECK_FALSE(Contains(text, kGpuMemoryBytes));
  CHECK(Contains(text, "# HELP moegraph_requests_total Requests finished, by finish reason.\n"));

  // All finish and refusal reasons from the start, at their values.
  CHECK(Sorted(SampleLines(text, kRequestsTotal)) ==
        std::vector<std::string>{"moegraph_requests_total{finish_reason=\"abort\"} 0",
                                 "moegraph_requests_total{finish_reason=\"error\"} 0",
                                 "moegraph_requests_total{finish_reason=\"length\"} 2",
                                 "moegraph_requests_total{finish_reason=\"stop\"} 0"});
  CHECK(Sorted(SampleLines(text, kRequestsRejectedTotal)) ==
        std::vector<std::string>{"moegraph_requests_rejected_total{reason=\"draining\"} 0",
                                 "moegraph_requests_rejected_total{reason=\"duplicate_id\"} 0",
                                 "moegraph_requests_rejected_total{reason=\"pool_exhausted\"} 0",
                                 "moegraph_requests_rejected_total{reason=\"queue_full\"} 0",
                                 "moegraph_requests_rejected_total{reason=\"too_long\"} 0"});
  CHECK(SampleLines(text, kSlotsCapacity) == std::vector<std::string>{"moegraph_slots_capacity 8"});
  CHECK(SampleLines(text, kPromptTokensTotal) ==
        std::vector<std::string>{"moegraph_prompt_tokens_total 12"});

  // TTFT: the latency buckets, cumulative, +Inf last.
  const std::vector<std::string> ttft =
      SampleLines(text, std::string(kTimeToFirstTokenSeconds) + "_bucket");
  REQUIRE(ttft.size() == LatencyBuckets().size() + 1);
  CHECK(ttft[0] == "moegraph_time_to_first_token_seconds_bucket{le=\"0.005\"} 0");
  CHECK(ttft[4] == "moegraph_time_to_first_token_seconds_bucket{le=\"0.1\"} 0");
  CHECK(ttft[5] == "moegraph_time_to_first_token_seconds_bucket{le=\"0.25\"} 1");
  CHECK(ttft[14] == "moegraph_time_to_first_token_seconds_bucket{le=\"300\"} 1");
  CHECK(ttft[15] == "moegraph_time_to_first_token_seconds_bucket{le=\"+Inf\"} 1");
  CHECK(SampleLines(text, std::string(kTimeToFirstTokenSeconds) + "_sum") ==
        std::vector<std::string>{"moegraph_time_to_first_token_seconds_sum 0.2"});
  CHECK(SampleLines(text, std::string(kTimeToFirstTokenSeconds) + "_count") ==
        std::vector<std::string>{"moegraph_time_to_first_token_seconds_count 1"});
  CHECK(SampleLines(text, std::string(kInterTokenLatencySeconds) + "_bucket").front() ==
        "moegraph_inter_token_latency_seconds_bucket{le=\"0.0001\"} 0");

  // Registering again merges into the same families and children.
  absl::StatusOr<ServerMetrics> again = RegisterServerMetrics(&registry);
  REQUIRE(again.ok());
  CHECK(again->requests.length == m->requests.length);
  CHECK(again->slots_capacity == m->slots_capacity);
}

TEST_CASE("metrics: step time is labelled by mode and bucket, one child each", "[metrics]") {
  prometheus::Registry registry;
  absl::StatusOr<ServerMetrics> m = RegisterServerMetrics(&registry);
  REQUIRE(m.ok());
  prometheus::Histogram& eager4 = m->StepDuration(kStepModeEager, 4);
  CHECK(&m->StepDuration(kStepModeEager, 4) == &eager4);
  CHECK(&m->StepDuration("piecewise", 4) != &eager4);
  eager4.Observe(0.003);
  eager4.Observe(0.5);
  const std::string text = Render(registry);
  const auto buckets = SampleLines(text, std::string(kStepDurationSeconds) + "_bucket");
  // Two children of FineLatencyBuckets() + Inf each.
  REQUIRE(buckets.size() == 2 * (FineLatencyBuckets().size() + 1));
  CHECK(Contains(text,
                 "moegraph_step_duration_seconds_bucket{bucket=\"4\",mode=\"eager\","
                 "le=\"0.002\"} 0\n"));
  CHECK(Contains(text,
                 "moegraph_step_duration_seconds_bucket{bucket=\"4\",mode=\"eager\","
                 "le=\"0.004\"} 1\n"));
  CHECK(Contains(text,
                 "moegraph_step_duration_seconds_bucket{bucket=\"4\",mode=\"eager\","
                 "le=\"0.5\"} 2\n"));
  CHECK(Contains(text, "moegraph_step_duration_seconds_count{bucket=\"4\",mode=\"eager\"} 2\n"));
  CHECK(
      Contains(text, "moegraph_step_duration_seconds_count{bucket=\"4\",mode=\"piecewise\"} 0\n"));
}

TEST_CASE("metrics: a family name taken by another type is an error, not an exception",
          "[metrics]") {
  prometheus::Registry registry;
  prometheus::BuildGauge().Name(kRequestsTotal).Help("Not a counter.").Register(registry);
  absl::StatusOr<ServerMetrics> m = RegisterServerMetrics(&registry);
  REQUIRE_FALSE(m.ok());
  CHECK(m.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(m.status().message()) ==
        "metrics: registering the families: Family name already exists with different type");
}

TEST_CASE("metrics: the scheduler observer feeds every family", "[metrics]") {
  prometheus::Registry registry;
  absl::StatusOr<std::unique_ptr<SchedulerMetrics>> made = SchedulerMetrics::Create(&registry, 4);
  REQUIRE(made.ok());
  SchedulerMetrics& o = **made;

  StepStats step;
  step.step_seconds = 0.010;
  step.engine_seconds = 0.004;
  step.prefill_tokens = 30;
  step.decode_tokens = 2;
  step.sequences = 3;  // mode "eager", bucket 0: labelled with the sequences
  o.OnStep(step);
  o.OnStep(step);
  step.mode = "full";
  step.bucket = 8;
  step.step_seconds = 0.001;
  step.engine_seconds = 0.002;  // more than the step: no negative overhead
  step.prefill_tokens = 0;
  step.launched_ahead = true;
  step.dropped_tokens = 1;
  o.OnStep(step);
  o.OnQueue(QueueStats{.waiting = 2, .running = 3, .slots_in_use = 3, .slots = 4});
  o.OnScheduled(0.05, 7);
  o.OnFirstToken(0.2);
  o.OnNextToken(0.01);
  o.OnNextToken(0.02);
  FinishEvent fin;
  fin.reason = FinishReason::kStop;
  fin.total_seconds = 1.5;
  o.OnFinished(fin);
  fin.reason = FinishReason::kError;
  o.OnFinished(fin);
  for (const char* reason : {kRejectQueueFull, kRejectTooLong, kRejectTooLong, kRejectPoolExhausted,
                             kRejectDraining, kRejectDuplicateId}) {
    o.OnRejected(reason);
  }
  o.OnRejected("no_such_reason");  // logged, counted nowhere
  StatePoolStats pool;
  pool.capacity_tokens = 4096;
  pool.reserved_tokens = 1000;
  pool.used_tokens = 37;
  pool.capacity_pages = 48;
  pool.reserved_pages = 12;
  pool.used_pages = 3;
  pool.max_sequence_tokens = 1539;
  o.OnStatePool(pool);
  // Two devices; the second report replaces the first's values.
  o.OnDeviceMemory({{"cuda:0", 1000, 80000}, {"cuda:1", 2000, 80000}});
  o.OnDeviceMemory({{"cuda:0", 1500, 80000}, {"cuda:1", 2500, 80000}});

  const std::string t = Render(registry);
  auto one = [&](const std::string& line) {
    INFO(line);
    CHECK(Contains(t, "\n" + line + "\n"));
  };
  one("moegraph_step_duration_seconds_count{bucket=\"3\",mode=\"eager\"} 2");
  one("moegraph_step_duration_seconds_sum{bucket=\"3\",mode=\"eager\"} 0.02");
  one("moegraph_step_duration_seconds_count{bucket=\"8\",mode=\"full\"} 1");
  // Only the graph step is a replay.
  CHECK(SampleLines(t, kGraphReplaysTotal) ==
        std::vector<std::string>{"moegraph_graph_replays_total{bucket=\"8\",mode=\"full\"} 1"});
  CHECK(Contains(t, "\n# TYPE moegraph_graph_replays_total counter\n"));
  CHECK(Contains(t, "\n# TYPE moegraph_gpu_memory_bytes gauge\n"));
  CHECK(
      Sorted(SampleLines(t, kGpuMemoryBytes)) ==
      std::vector<std::string>{"moegraph_gpu_memory_bytes{device=\"cuda:0\",kind=\"total\"} 80000",
                               "moegraph_gpu_memory_bytes{device=\"cuda:0\",kind=\"used\"} 1500",
                               "moegraph_gpu_memory_bytes{device=\"cuda:1\",kind=\"total\"} 80000",
                               "moegraph_gpu_memory_bytes{device=\"cuda:1\",kind=\"used\"} 2500"});
  one("moegraph_steps_total 3");
  one("moegraph_prefill_tokens_total 60");
  one("moegraph_decode_tokens_total 6");
  one("moegraph_engine_step_seconds_total 0.01");
  one("moegraph_scheduler_overhead_seconds_total 0.012");
  one("moegraph_steps_launched_ahead_total 1");
  one("moegraph_dropped_tokens_total 1");
  one("moegraph_requests_waiting 2");
  one("moegraph_requests_running 3");
  one("moegraph_slots_used 3");
  one("moegraph_slots_capacity 4");
  one("moegraph_queue_time_seconds_count 1");
  one("moegraph_prompt_tokens_total 7");
  one("moegraph_generated_tokens_total 3");
  one("moegraph_time_to_first_token_seconds_count 1");
  one("moegraph_inter_token_latency_seconds_count 2");
  one("moegraph_inter_token_latency_seconds_sum 0.03");
  one("moegraph_request_duration_seconds_count 2");
  one("moegraph_requests_total{finish_reason=\"stop\"} 1");
  one("moegraph_requests_total{finish_reason=\"error\"} 1");
  one("moegraph_requests_total{finish_reason=\"length\"} 0");
  one("moegraph_requests_rejected_total{reason=\"queue_full\"} 1");
  one("moegraph_requests_rejected_total{reason=\"too_long\"} 2");
  one("moegraph_requests_rejected_total{reason=\"pool_exhausted\"} 1");
  one("moegraph_requests_rejected_total{reason=\"draining\"} 1");
  one("moegraph_requests_rejected_total{reason=\"duplicate_id\"} 1");
  one("moegraph_state_pool_tokens_capacity 4096");
  one("moegraph_state_pool_tokens_reserved 1000");
  one("moegraph_state_pool_tokens_used 37");
  one("moegraph_state_pool_pages_capacity 48");
  one("moegraph_state_pool_pages_reserved 12");
  one("moegraph_state_pool_pages_used 3");
  one("moegraph_request_max_tokens 1539");
  CHECK_FALSE(Contains(t, "no_such_reason"));
}

TEST_CASE("metrics: the HTTP server serves /metrics, read at scrape time", "[metrics][http]") {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::Counter& tokens = prometheus::BuildCounter()
                                    .Name("moegraph_generated_tokens_total")
                                    .Help("Tokens.")
                                    .Register(*registry)
                                    .Add({});
  tokens.Increment(12);
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Start("127.0.0.1:0", registry);
  REQUIRE(server.ok());
  const int port = (*server)->port();
  REQUIRE(port > 0);

  HttpResponse metrics = HttpGet(port, "/metrics");
  CHECK(metrics.status == 200);
  CHECK(Contains(metrics.headers, "\r\nContent-Type: text/plain; charset=utf-8\r\n"));
  CHECK(Contains(metrics.body,
                 "# TYPE moegraph_generated_tokens_total counter\n"
                 "moegraph_generated_tokens_total 12\n"));
  // Ours plus the Exposer's own three families (kept; metrics.h says why).
  CHECK(Contains(metrics.body, Render(*registry)));
  CHECK(Contains(metrics.body, "# TYPE exposer_scrapes_total counter\n"));
  CHECK(Contains(metrics.body, "# TYPE exposer_transferred_bytes_total counter\n"));
  CHECK(Contains(metrics.body, "# TYPE exposer_request_latencies summary\n"));

  tokens.Increment(1);
  HttpResponse again = HttpGet(port, "/metrics");
  CHECK(Contains(again.body, "moegraph_generated_tokens_total 13\n"));
  CHECK(Contains(again.body, "exposer_scrapes_total 1\n"));  // the first scrape

  CHECK(HttpGet(port, "/").status == 404);
  CHECK(HttpGet(port, "/metric").status == 404);

  server->reset();  // stops and joins; the port is closed afterwards
  CHECK(HttpGet(port, "/metrics").status == 0);
}

TEST_CASE("metrics: bind failures and bad addresses are errors naming the address",
          "[metrics][http]") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto first = MetricsHttpServer::Start("127.0.0.1:0", registry);
  REQUIRE(first.ok());
  const std::string taken = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = MetricsHttpServer::Start(taken, registry);
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().code() == absl::StatusCode::kUnavailable);
  CHECK(std::string(second.status().message()) ==
        "metrics: cannot listen on " + taken + ": Address already in use");

  auto unassigned = MetricsHttpServer::Start("192.0.2.1:9464", registry);  // TEST-NET-1
  REQUIRE_FALSE(unassigned.ok());
  CHECK(std::string(unassigned.status().message()) ==
        "metrics: cannot listen on 192.0.2.1:9464: Cannot assign requested address");

  auto bad = MetricsHttpServer::Start("localhost", registry);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(bad.status().message()) ==
        "metrics address: expected host:port, got \"localhost\" (no port)");

  auto v6 = MetricsHttpServer::Start("[::1]:0", registry);
  REQUIRE_FALSE(v6.ok());
  CHECK(v6.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(Contains(std::string(v6.status().message()), "IPv6 is not supported"));
}

TEST_CASE("metrics: with basic auth, only a listed user and password may scrape",
          "[metrics][http]") {
  testing::TempDir dir;
  const std::string users = dir.File("users");
  // printf %s secret-a | sha256sum
  std::ofstream(users) << "prometheus 8766b9cb08e6040b704f1e3ee1e186efccf2635b1d2634d6525333007e6"
                          "aeae1\n";
  auto auth = BasicAuthCredentials::Load(users, "metrics_basic_auth_file");
  REQUIRE(auth.ok());
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildCounter().Name("moegraph_x_total").Help("X.").Register(*registry).Add({});
  auto server = MetricsHttpServer::Start("127.0.0.1:0", registry, std::move(*auth));
  REQUIRE(server.ok());
  const int port = (*server)->port();

  HttpResponse none = HttpGet(port, "/metrics");
  CHECK(none.status == 401);
  CHECK(Contains(none.headers, "WWW-Authenticate: Basic realm=\"moegraph metrics\""));
  CHECK_FALSE(Contains(none.body, "moegraph_x_total"));
  // base64("prometheus:secret-b"), then base64("prometheus:secret-a").
  CHECK(HttpGet(port, "/metrics", "Authorization: Basic cHJvbWV0aGV1czpzZWNyZXQtYg==\r\n").status ==
        401);
  CHECK(HttpGet(port, "/metrics", "Authorization: Bearer secret-a\r\n").status == 401);
  HttpResponse ok =
      HttpGet(port, "/metrics", "Authorization: Basic cHJvbWV0aGV1czpzZWNyZXQtYQ==\r\n");
  CHECK(ok.status == 200);
  CHECK(Contains(ok.body, "moegraph_x_total 0\n"));
}

// Why metrics_tls_cert_file is refused (server_config.cc): Debian 12's
// civetweb is built with TLS, but loads OpenSSL by name at run time and needs
// SSL_get_peer_certificate, which OpenSSL 3 exports no longer (a macro for
// SSL_get1_peer_certificate); civetweb calls the null pointer on every HTTPS
// connection. When this fails, the libraries changed: try TLS on /metrics again.
TEST_CASE("metrics: Debian's civetweb still cannot serve TLS with this OpenSSL", "[metrics]") {
  void* civetweb = dlopen("libcivetweb.so.1", RTLD_NOW | RTLD_LOCAL);
  REQUIRE(civetweb != nullptr);
  using CheckFeature = unsigned (*)(unsigned);
  auto check_feature = reinterpret_cast<CheckFeature>(dlsym(civetweb, "mg_check_feature"));
  REQUIRE(check_feature != nullptr);
  CHECK(check_feature(2) == 2);  // MG_FEATURES_SSL: built with TLS
  // The name civetweb asks for (libssl-dev's libssl.so -> libssl.so.3).
  void* ssl = dlopen("libssl.so", RTLD_NOW | RTLD_LOCAL);
  REQUIRE(ssl != nullptr);
  CHECK(dlsym(ssl, "SSL_get1_peer_certificate") != nullptr);
  CHECK(dlsym(ssl, "SSL_get_peer_certificate") == nullptr);
  dlclose(ssl);
  dlclose(civetweb);
}

TEST_CASE("metrics: a server started and destroyed at once shuts down cleanly", "[metrics][http]") {
  // Few rounds: civetweb's stop waits out its listener's 2 s poll.
  auto registry = std::make_shared<prometheus::Registry>();
  for (int i = 0; i < 3; ++i) {
    auto server = MetricsHttpServer::Start("127.0.0.1:0", registry);
    REQUIRE(server.ok());
    const int port = (*server)->port();
    server->reset();
    CHECK(HttpGet(port, "/metrics").status == 0);
  }
}

}  // namespace
}  // namespace moegraph::metrics
