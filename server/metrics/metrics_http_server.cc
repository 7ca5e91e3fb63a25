// MetricsHttpServer: GET /metrics over cpp-httplib, on a thread of its own so
// that scrapes never wait on the gRPC server or the scheduler.
#include <httplib.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/common/logging.h"
#include "server/config/host_port.h"
#include "server/metrics/metrics.h"

namespace moegraph::metrics {
namespace {
constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";
// Scrapes are rare and cheap; two workers let one slow client not block another.
constexpr size_t kWorkerThreads = 2;
}  // namespace

struct MetricsHttpServer::Impl {
  httplib::Server server;
  std::thread thread;  // runs listen_after_bind() until server.stop()
  std::atomic<bool> listener_returned{false};
  int port = 0;
};

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& address, const Registry* registry) {
  absl::StatusOr<HostPort> host_port = ParseHostPort(address);
  if (!host_port.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address: ", host_port.status().message()));
  }
  std::unique_ptr<MetricsHttpServer> self(new MetricsHttpServer());
  self->impl_ = std::make_unique<Impl>();
  httplib::Server& server = self->impl_->server;
  server.new_task_queue = [] { return new httplib::ThreadPool(kWorkerThreads); };
  // httplib's default also sets SO_REUSEPORT, which would let a second daemon
  // bind the same port and silently take half of the scrapes.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server.Get("/metrics", [registry](const httplib::Request&, httplib::Response& response) {
    response.set_content(registry->Render(), kContentType);
  });

  errno = 0;
  int port = host_port->port;
  bool bound = false;
  if (port == 0) {
    port = server.bind_to_any_port(host_port->host);
    bound = port > 0;
  } else {
    bound = server.bind_to_port(host_port->host, port);
  }
  if (!bound) {
    const int err = errno;
    return absl::UnavailableError(absl::StrCat("metrics: cannot listen on ", address,
                                               err != 0 ? ": " : "",
                                               err != 0 ? std::strerror(err) : ""));
  }
  self->impl_->port = port;
  Impl* impl = self->impl_.get();
  impl->thread = std::thread([impl] {
    impl->server.listen_after_bind();
    impl->listener_returned = true;
  });
  // stop() is a no-op until the listener runs, so wait for it: otherwise a
  // server destroyed right away would never stop.
  while (!server.is_running() && !impl->listener_returned) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  LOG_VERBOSE << "metrics: serving http://" << address.substr(0, address.rfind(':')) << ":" << port
              << "/metrics";
  return self;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (impl_ == nullptr) return;
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int MetricsHttpServer::port() const { return impl_->port; }

}  // namespace moegraph::metrics
