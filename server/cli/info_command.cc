// `moegraph info`: prints the model moegraphd serves (GetModelInfo).
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>

#include "absl/strings/str_join.h"
#include "engine/common/cli_registry.h"
#include "grpcpp/grpcpp.h"
#include "moegraph/v1/generation.grpc.pb.h"
#include "server/client/cli_args.h"
#include "server/service/grpc_status.h"

namespace moegraph {
namespace {

constexpr const char* kUsage =
    "usage: moegraph info [--timeout SECONDS] [--server HOST:PORT]\n"
    "\n"
    "Prints the served model: name, type, context limit, vocabulary, special\n"
    "tokens, devices, layout and the server's slots.\n";

int RunInfo(int argc, char** argv) {
  absl::StatusOr<CliArgs> args = ParseCliArgs(argc, argv, {"--timeout", "--server"}, {"--help"});
  if (std::optional<int> exit = HandleUsage(args, "info", kUsage, false)) return *exit;
  absl::StatusOr<double> timeout = ParseDoubleFlag("--timeout", args->get("--timeout", "5"));
  if (!timeout.ok()) {
    std::fprintf(stderr, "moegraph info: %s\n", std::string(timeout.status().message()).c_str());
    return 2;
  }
  auto channel = grpc::CreateChannel(ServerAddress(*args), grpc::InsecureChannelCredentials());
  auto stub = v1::Generation::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::duration_cast<std::chrono::system_clock::duration>(
                           std::chrono::duration<double>(*timeout)));
  v1::ModelInfo info;
  grpc::Status status = stub->GetModelInfo(&context, v1::GetModelInfoRequest(), &info);
  if (!status.ok()) {
    std::fprintf(stderr, "moegraph info: %s\n", FromGrpcStatus(status).ToString().c_str());
    return 1;
  }
  std::printf("model:           %s (%s)\n", info.name().c_str(), info.model_type().c_str());
  std::printf("context limit:   %d tokens\n", info.context_limit());
  std::printf("vocabulary:      %d tokens\n", info.vocab_size());
  std::printf("bos token:       %d\n", info.bos_token_id());
  std::printf("eos tokens:      %s\n", absl::StrJoin(info.eos_token_ids(), ", ").c_str());
  std::printf("layers / hidden: %d / %d\n", info.num_layers(), info.hidden_size());
  std::printf("devices:         %s\n", absl::StrJoin(info.devices(), "; ").c_str());
  std::printf("layout:          %s\n", info.layout().c_str());
  std::printf("slots:           %d (step budget %d tokens)\n", info.slots(),
              info.max_step_tokens());
  return 0;
}

}  // namespace
}  // namespace moegraph

MOEGRAPH_CLI_COMMAND(info, "info", "info [--server ADDR]", "show the model moegraphd serves",
                     moegraph::RunInfo);
