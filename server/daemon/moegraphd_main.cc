// moegraphd: the gRPC inference daemon. Starts the gRPC server at once
// (health answers NOT_SERVING for moegraph.v1.Generation while the model
// loads), serves until SIGTERM or SIGINT, then drains: readiness goes
// NOT_SERVING, new calls get UNAVAILABLE, running requests get the grace
// period, the rest end with finish reason abort, and the process exits 0.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "engine/common/logging.h"
#include "engine/engine.h"
#include "engine/parallel/nccl_environment.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "prometheus/registry.h"
#include "server/config/host_port.h"
#include "server/config/server_config.h"
#include "server/daemon/listener_credentials.h"
#include "server/daemon/scheduler_metrics.h"
#include "server/metrics/metrics.h"
#include "server/scheduler/scheduler.h"
#include "server/service/generation_service.h"
#include "server/service/protobuf_log_limit.h"
#include "server/testing/fake_engine.h"
#include "server/text/text_codec.h"

namespace moegraph {
namespace {

constexpr const char* kUsage =
    "usage: moegraphd [--config FILE] [--KEY=VALUE ...]\n"
    "\n"
    "Serves moegraph.v1.Generation, grpc.health.v1.Health and server reflection on\n"
    "listen_address, and Prometheus metrics on metrics_address. Flags override the\n"
    "YAML file given with --config; SIGTERM or SIGINT drains and exits 0.\n"
    "\n"
    "daemon flags:\n"
    "  --config FILE        YAML configuration (config/moegraphd.yaml)\n"
    "  --fake-engine        serve a deterministic stand-in model (testing; no weights)\n"
    "  --fake-step-ms N     with --fake-engine: pretend each step takes N ms\n"
    "  --fake-pipelined     with --fake-engine: sample on its \"device\" and pipeline steps\n"
    "                       as a GPU engine does (step N+1 launched before N's ids are back)\n"
    "  --fake-load-ms N     with --fake-engine: pretend loading takes N ms\n"
    "  --no-pipeline        GPU: collect every step's ids before planning the next\n"
    "                       (by default step N+1 is launched before N's ids are back)\n"
    "  --cpu-pipelined      CPU: sample on the backend and pipeline steps as the GPU\n"
    "                       engine does (its code path without a GPU; for tests)\n"
    "  --help               this text\n"
    "\n";

struct DaemonFlags {
  std::string config_path;
  bool fake_engine = false;
  bool fake_pipelined = false;
  bool no_pipeline = false;
  bool cpu_pipelined = false;
  double fake_step_ms = 0;
  double fake_load_ms = 0;
  std::vector<std::string> config_flags;  // for ApplyServerFlags
  bool help = false;
};

absl::StatusOr<DaemonFlags> ParseDaemonFlags(int argc, char** argv) {
  DaemonFlags flags;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value_of = [&](const std::string& name, std::string* out) -> absl::StatusOr<bool> {
      if (arg == name) {
        if (i + 1 >= argc) return absl::InvalidArgumentError(name + ": needs a value");
        *out = argv[++i];
        return true;
      }
      if (arg.rfind(name + "=", 0) == 0) {
        *out = arg.substr(name.size() + 1);
        return true;
      }
      return false;
    };
    std::string value;
    if (arg == "--help" || arg == "-h") {
      flags.help = true;
      continue;
    }
    // Switches, spelled with dashes or underscores.
    std::string name = arg;
    std::replace(name.begin(), name.end(), '_', '-');
    bool* on = name == "--fake-engine"      ? &flags.fake_engine
               : name == "--fake-pipelined" ? &flags.fake_pipelined
               : name == "--no-pipeline"    ? &flags.no_pipeline
               : name == "--cpu-pipelined"  ? &flags.cpu_pipelined
                                            : nullptr;
    if (on != nullptr) {
      *on = true;
      continue;
    }
    absl::StatusOr<bool> got = value_of("--config", &flags.config_path);
    if (!got.ok()) return got.status();
    if (*got) continue;
    // "--NAME N" or "--NAME=N" with N a number >= 0.
    auto millis_of = [&](const std::string& name, double* out) -> absl::StatusOr<bool> {
      absl::StatusOr<bool> found = value_of(name, &value);
      if (!found.ok() || !*found) return found;
      char* end = nullptr;
      *out = std::strtod(value.c_str(), &end);
      if (end == value.c_str() || *end != '\0' || *out < 0) {
        return absl::InvalidArgumentError(name + ": must be a number >= 0, got '" + value + "'");
      }
      return true;
    };
    got = millis_of("--fake-step-ms", &flags.fake_step_ms);
    if (!got.ok()) return got.status();
    if (*got) continue;
    got = millis_of("--fake-load-ms", &flags.fake_load_ms);
    if (!got.ok()) return got.status();
    if (*got) continue;
    flags.config_flags.push_back(arg);
  }
  return flags;
}

std::string ResolveDevice(const std::string& device) {
  if (device != "auto") return device;
#if MOEGRAPH_HAVE_CUDA
  if (std::filesystem::exists("/dev/nvidia0")) return "cuda";
#endif
  return "cpu";
}

int Serve(const ServerConfig& config, const DaemonFlags& flags, const sigset_t& signals) {
  auto registry = std::make_shared<prometheus::Registry>();
  absl::StatusOr<std::unique_ptr<SchedulerMetrics>> server_metrics =
      SchedulerMetrics::Create(registry.get(), config.slots);
  if (!server_metrics.ok()) {
    LOG_ERROR << "metrics: " << server_metrics.status();
    return 1;
  }
  std::unique_ptr<metrics::MetricsHttpServer> metrics_http;
  if (!config.metrics_address.empty()) {
    std::unique_ptr<const metrics::BasicAuthCredentials> basic_auth;
    if (!config.metrics_basic_auth_file.empty()) {
      absl::StatusOr<std::unique_ptr<metrics::BasicAuthCredentials>> loaded =
          metrics::BasicAuthCredentials::Load(config.metrics_basic_auth_file,
                                              "metrics_basic_auth_file");
      if (!loaded.ok()) {
        LOG_ERROR << loaded.status().message();
        return 1;
      }
      basic_auth = std::move(*loaded);
    } else if (!IsLoopbackAddress(config.metrics_address)) {
      LOG_WARN << "metrics on " << config.metrics_address
               << " beyond loopback without metrics_basic_auth_file: anyone who can reach it "
                  "can read the metrics (README, \"Security\")";
    }
    absl::StatusOr<std::unique_ptr<metrics::MetricsHttpServer>> started =
        metrics::MetricsHttpServer::Start(config.metrics_address, registry, std::move(basic_auth));
    if (started.ok()) {
      metrics_http = std::move(*started);
      LOG_INFO << "metrics on http://" << config.metrics_address << "/metrics (port "
               << metrics_http->port() << ")"
               << (config.metrics_basic_auth_file.empty() ? "" : ", basic auth required");
    } else {
      // Names the address and the reason ("Address already in use", ...).
      LOG_ERROR << started.status().message();
      return 1;
    }
  }

  absl::StatusOr<std::unique_ptr<CallerIdentity>> identity =
      CallerIdentity::Create(config.api_keys_file);
  if (!identity.ok()) {
    LOG_ERROR << identity.status().message();
    return 1;
  }
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      ListenerCredentials(config);
  if (!credentials.ok()) {
    LOG_ERROR << credentials.status().message();
    return 1;
  }
  const bool tls = !config.tls_cert_file.empty();
  if (!IsLoopbackAddress(config.listen_address) && !tls && !(*identity)->requires_keys()) {
    LOG_WARN << "listening on " << config.listen_address
             << " beyond loopback without TLS or API keys: anyone who can reach it can run "
                "and abort requests (README, \"Security\")";
  }
  GenerationService service(identity->get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config.listen_address, *credentials, &port);
  // gRPC sets SO_REUSEPORT by default: a second daemon on a taken port would
  // start and silently take half the connections.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // One connection may not hold every slot and queue place; a client that
  // stops answering pings (frozen, or gone without a FIN) loses its
  // connection, and its streams free their slots.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, config.max_streams_per_connection);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(config.keepalive_time_seconds * 1000));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             static_cast<int>(config.keepalive_timeout_seconds * 1000));
  // Clients may keep idle connections alive with pings every 10 s or more.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  // Keep pinging a connection whose streams are stalled (no data to send).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    absl::StatusOr<HostPort> hp = ParseHostPort(config.listen_address);
    LOG_ERROR << "cannot listen on " << config.listen_address << ": "
              << (hp.ok() ? BindFailureReason(*hp, "the gRPC server could not start")
                          : std::string(hp.status().message()));
    return 1;
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus("", true);
  health->SetServingStatus(GenerationService::kServiceName, false);
  LOG_INFO << "listening on " << config.listen_address << " (port " << port << ", "
           << (tls ? (config.tls_client_ca_file.empty() ? "TLS" : "mutual TLS") : "plaintext")
           << ((*identity)->requires_keys() ? ", API keys" : "") << "), loading "
           << (flags.fake_engine ? std::string("the fake engine") : config.model_dir);

  std::unique_ptr<Engine> engine;
  if (flags.fake_engine) {
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(flags.fake_load_ms));
    FakeEngineOptions fake;
    fake.num_slots = config.slots;
    fake.max_step_tokens = config.max_step_tokens;
    fake.context_limit = config.context_limit > 0 ? config.context_limit : 4096;
    fake.state_pool_tokens = config.state_pool_tokens;
    fake.step_seconds = flags.fake_step_ms / 1e3;
    fake.record_steps = false;
    fake.device_sampling = fake.pipelined = flags.fake_pipelined;
    engine = std::make_unique<FakeEngine>(fake);
  } else {
    EngineOptions options;
    options.model_dir = config.model_dir;
    options.device = ResolveDevice(config.device);
    options.num_slots = config.slots;
    options.context_limit = config.context_limit;
    options.max_step_tokens = config.max_step_tokens;
    options.graphs = config.graphs;
    options.devices = config.devices;
    options.layout = config.layout;
    options.layer_blocks = config.layer_blocks;
    options.transport = config.transport;
    options.state_pool_tokens = config.state_pool_tokens;
    options.w8a8_min_rows = config.w8a8_min_rows;
    options.pipeline_steps = !flags.no_pipeline;
    options.cpu_backend_sampling = flags.cpu_pipelined;
    absl::StatusOr<std::unique_ptr<Engine>> created = Engine::Create(options);
    if (!created.ok()) {
      LOG_ERROR << "loading " << config.model_dir << ": " << created.status();
      server->Shutdown();
      return 1;
    }
    engine = std::move(*created);
  }
  std::unique_ptr<TextCodec> codec;
  absl::StatusOr<std::unique_ptr<TextCodec>> loaded = LoadTokenizerCodec(config.model_dir);
  if (loaded.ok()) {
    codec = std::move(*loaded);
  } else if (std::filesystem::exists(std::filesystem::path(config.model_dir) / "tokenizer.json")) {
    // A tokenizer that is there but broken must not pass for none.
    LOG_ERROR << "loading " << config.model_dir << ": " << loaded.status();
    server->Shutdown();
    return 1;
  } else {
    LOG_WARN << "no tokenizer (" << loaded.status() << "); only token-id prompts, no text";
  }

  // Before the scheduler thread exists (the pool is the scheduler's after that).
  const StatePoolStats pool = engine->state_pool();
  SchedulerOptions scheduler_options;
  scheduler_options.max_queue = config.queue_size;
  scheduler_options.max_step_tokens = config.max_step_tokens;
  scheduler_options.max_waiting_per_identity = config.max_waiting_per_identity;
  scheduler_options.stall_timeout_seconds = config.stall_timeout_seconds;
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler =
      Scheduler::Create(engine.get(), codec.get(), scheduler_options, server_metrics->get());
  if (!scheduler.ok()) {
    LOG_ERROR << scheduler.status();
    server->Shutdown();
    return 1;
  }

  const ModelInfo& info = engine->info();
  RequestLimits limits;
  limits.vocab_size = info.vocab_size;
  limits.context_limit = info.context_limit;
  limits.max_sequence_tokens = pool.max_sequence_tokens;
  limits.bos_token_id = info.bos_token_id;
  limits.eos_token_ids = info.eos_token_ids;
  limits.max_stop_strings = config.max_stop_strings;
  limits.max_stop_string_length = config.max_stop_string_length;
  limits.max_logprobs = config.max_logprobs;
  limits.max_prompt_bytes = config.max_prompt_bytes;
  limits.max_stop_token_ids = config.max_stop_token_ids;
  limits.defaults = config.sampling;
  StreamLimits stream_limits;
  stream_limits.max_message_bytes = static_cast<size_t>(config.max_message_bytes);
  stream_limits.max_backlog_bytes = static_cast<size_t>(config.max_stream_backlog_bytes);
  service.SetReady(scheduler->get(), codec.get(), info, limits, stream_limits, engine->num_slots(),
                   engine->max_step_tokens());
  health->SetServingStatus(GenerationService::kServiceName, true);
  LOG_INFO << absl::StrFormat(
      "ready: %s (%s) on %s, %d slots, context %d (%d per request with the state pool of %d "
      "tokens), vocab %d, queue %d, step budget %d",
      info.name, info.model_type, info.device, engine->num_slots(), info.context_limit,
      pool.max_sequence_tokens > 0 ? std::min(info.context_limit, pool.max_sequence_tokens)
                                   : info.context_limit,
      pool.capacity_tokens, info.vocab_size, config.queue_size, config.max_step_tokens);

  int sig = 0;
  sigwait(&signals, &sig);
  LOG_INFO << absl::StrFormat("%s: draining (grace %.1f s)", strsignal(sig),
                              config.drain_grace_seconds);
  service.SetDraining();
  health->SetServingStatus(GenerationService::kServiceName, false);

  // A second signal cuts the grace period short.
  const auto deadline =
      SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(
                               std::chrono::duration<double>(config.drain_grace_seconds));
  std::atomic<bool> drained{false};
  bool clean = true;
  std::thread drainer([&] {
    clean = (*scheduler)->Drain(deadline);
    drained = true;
  });
  while (!drained) {
    timespec tick{0, 50 * 1000 * 1000};
    if (sigtimedwait(&signals, nullptr, &tick) > 0) {
      LOG_WARN << "second signal: aborting the remaining requests now";
      (*scheduler)->Drain(SteadyClock::now());
    }
  }
  drainer.join();
  LOG_INFO << (clean ? "drained: every request finished"
                     : "drained: requests left at the deadline ended with finish reason abort");
  // Every request has its final message; let the streams deliver them (a
  // client that stopped reading gets 5 s), then close the listeners and
  // connections.
  if (!service.WaitForStreams(SteadyClock::now() + std::chrono::seconds(5))) {
    LOG_WARN << "some streams did not deliver their final message within 5 s; cancelling them";
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  server->Wait();
  scheduler->reset();
  LOG_INFO << "moegraphd: bye";
  return 0;
}

}  // namespace
}  // namespace moegraph

int main(int argc, char** argv) {
  const std::vector<std::string> nccl_defaults = moegraph::ApplyNcclDefaults();  // no threads yet
  // Every thread inherits this mask, so the signals reach only sigwait below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  absl::StatusOr<moegraph::DaemonFlags> flags = moegraph::ParseDaemonFlags(argc, argv);
  if (!flags.ok()) {
    std::fprintf(stderr, "moegraphd: %s\n\n%s", std::string(flags.status().message()).c_str(),
                 moegraph::kUsage);
    return 2;
  }
  if (flags->help) {
    std::fputs(moegraph::kUsage, stdout);
    std::fputs(moegraph::ServerConfigHelp().c_str(), stdout);
    return 0;
  }
  moegraph::ServerConfig config;
  if (!flags->config_path.empty()) {
    absl::StatusOr<moegraph::ServerConfig> loaded = moegraph::LoadServerConfig(flags->config_path);
    if (!loaded.ok()) {
      std::fprintf(stderr, "moegraphd: %s: %s\n", flags->config_path.c_str(),
                   std::string(loaded.status().message()).c_str());
      return 2;
    }
    config = *loaded;
  }
  absl::Status applied = moegraph::ApplyServerFlags(flags->config_flags, &config);
  if (applied.ok()) applied = moegraph::ValidateServerConfig(config);
  if (!applied.ok()) {
    std::fprintf(stderr, "moegraphd: %s\n\n%s", std::string(applied.message()).c_str(),
                 moegraph::kUsage);
    return 2;
  }
  moegraph::LogLevel level;
  if (moegraph::ParseLogLevel(config.log_level, &level)) moegraph::SetLogLevel(level);
  moegraph::InstallProtobufLogLimit(/*lines_per_minute=*/10);
  for (const std::string& set : nccl_defaults) LOG_INFO << "environment: " << set << " (default)";
  return moegraph::Serve(config, *flags, signals);
}
