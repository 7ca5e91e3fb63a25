// `moegraph health`: asks moegraphd's grpc.health.v1 service for liveness
// ("") and readiness (moegraph.v1.Generation).
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "engine/common/cli_registry.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "server/client/cli_args.h"
#include "server/service/grpc_status.h"

namespace moegraph {
namespace {

constexpr const char* kUsage =
    "usage: moegraph health [--service NAME] [--timeout SECONDS] [--server HOST:PORT]\n"
    "\n"
    "Prints the serving status of liveness (\"\") and readiness\n"
    "(moegraph.v1.Generation), or of --service NAME. Exit code 0 when all are\n"
    "SERVING, 1 otherwise.\n";

int RunHealth(int argc, char** argv) {
  absl::StatusOr<CliArgs> args =
      ParseCliArgs(argc, argv, {"--service", "--timeout", "--server"}, {"--help"});
  if (std::optional<int> exit = HandleUsage(args, "health", kUsage, false)) return *exit;
  double timeout = 5;
  if (args->has("--timeout")) {
    absl::StatusOr<double> t = ParseDoubleFlag("--timeout", args->get("--timeout"));
    if (!t.ok()) {
      std::fprintf(stderr, "moegraph health: %s\n", std::string(t.status().message()).c_str());
      return 2;
    }
    timeout = *t;
  }
  std::vector<std::string> services = {"", "moegraph.v1.Generation"};
  if (args->has("--service")) services = {args->get("--service")};

  auto channel = grpc::CreateChannel(ServerAddress(*args), grpc::InsecureChannelCredentials());
  auto stub = grpc::health::v1::Health::NewStub(channel);
  bool all_serving = true;
  for (const std::string& service : services) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::duration_cast<std::chrono::system_clock::duration>(
                             std::chrono::duration<double>(timeout)));
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status = stub->Check(&context, request, &response);
    const std::string label = service.empty() ? "liveness" : "readiness " + service;
    if (status.ok()) {
      std::printf(
          "%s: %s\n", label.c_str(),
          grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status()).c_str());
      all_serving &= response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
    } else {
      std::printf("%s: %s\n", label.c_str(), FromGrpcStatus(status).ToString().c_str());
      all_serving = false;
    }
  }
  return all_serving ? 0 : 1;
}

}  // namespace
}  // namespace moegraph

MOEGRAPH_CLI_COMMAND(health, "health", "health [--service NAME] [--server ADDR]",
                     "check moegraphd's liveness and readiness", moegraph::RunHealth);
