// `moegraph cluster-bootstrap`: the multi-node bootstrap on its own
// (server/cluster/bootstrap.h), one process per node: what a multi-process
// run on one host, or a LeaderWorkerSet, exercises before any GPU work.
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "engine/common/cli_registry.h"
#include "engine/engine.h"
#include "grpcpp/grpcpp.h"
#include "server/client/cli_args.h"
#include "server/cluster/bootstrap.h"

namespace moegraph {
namespace {

constexpr const char* kUsage =
    "usage: moegraph cluster-bootstrap --model-dir DIR [--leader HOST:PORT] [--nodes N]\n"
    "         [--node I] [--layout ep|layers|ep+layers] [--gpus-per-node G] [--timeout SECONDS]\n"
    "\n"
    "Forms a group of N nodes (docs/multi-node.md): node 0 listens on --leader and,\n"
    "once the other N-1 nodes have joined with the same layout, GPUs per node and\n"
    "checkpoint (config.json and the weight files' names and sizes), hands each a\n"
    "fresh group id; every node prints its first 8 bytes (hex). Without the flags,\n"
    "a LeaderWorkerSet's environment is used: LWS_LEADER_ADDRESS (port 29431),\n"
    "LWS_GROUP_SIZE, LWS_WORKER_INDEX. Defaults: --layout ep, --gpus-per-node 1,\n"
    "--timeout 60. Exit status 0 when the group formed, 1 when it did not (the\n"
    "message names the differing field or the missing nodes), 2 for bad flags.\n"
    "The channel is plaintext: run it on a private network.\n";

constexpr int kDefaultControlPort = 29431;

int Fail(const std::string& message, int code) {
  std::fprintf(stderr, "moegraph cluster-bootstrap: %s\n", message.c_str());
  return code;
}

int RunClusterBootstrap(int argc, char** argv) {
  absl::StatusOr<CliArgs> args = ParseCliArgs(
      argc, argv,
      {"--model-dir", "--leader", "--nodes", "--node", "--layout", "--gpus-per-node", "--timeout"},
      {"--help"});
  if (std::optional<int> exit = HandleUsage(args, "cluster-bootstrap", kUsage, false)) return *exit;
  auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v ? v : "";
  };
  std::string leader = args->get("--leader");
  if (leader.empty() && !env("LWS_LEADER_ADDRESS").empty())
    leader = absl::StrCat(env("LWS_LEADER_ADDRESS"), ":", kDefaultControlPort);
  if (leader.empty()) return Fail("--leader HOST:PORT (or LWS_LEADER_ADDRESS) is required", 2);
  if (!args->has("--model-dir")) return Fail("--model-dir DIR is required", 2);
  auto integer = [&](const char* flag, const char* lws, long long fallback, long long lo,
                     long long hi) -> absl::StatusOr<long long> {
    std::string text = args->get(flag, lws ? env(lws) : "");
    if (text.empty()) return fallback;
    absl::StatusOr<long long> v = ParseIntFlag(flag, text);
    if (!v.ok()) return v.status();
    if (*v < lo || *v > hi) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": must be in [", lo, ", ", hi, "], got ", *v));
    }
    return v;
  };
  NodeIdentity self;
  absl::StatusOr<long long> nodes = integer("--nodes", "LWS_GROUP_SIZE", 1, 1, 1024);
  if (!nodes.ok()) return Fail(std::string(nodes.status().message()), 2);
  self.nodes = static_cast<int>(*nodes);
  absl::StatusOr<long long> node = integer("--node", "LWS_WORKER_INDEX", 0, 0, self.nodes - 1);
  if (!node.ok()) return Fail(std::string(node.status().message()), 2);
  self.node = static_cast<int>(*node);
  absl::StatusOr<long long> gpus = integer("--gpus-per-node", nullptr, 1, 1, 64);
  if (!gpus.ok()) return Fail(std::string(gpus.status().message()), 2);
  self.gpus_per_node = static_cast<int>(*gpus);
  absl::StatusOr<long long> timeout_s = integer("--timeout", nullptr, 60, 1, 86400);
  if (!timeout_s.ok()) return Fail(std::string(timeout_s.status().message()), 2);
  const absl::Duration timeout = absl::Seconds(*timeout_s);
  self.layout = args->get("--layout", "ep");
  bool known = false;
  for (const char* l : kLayouts) known = known || self.layout == l;
  if (!known)
    return Fail("--layout: must be one of ep, layers, ep+layers, got '" + self.layout + "'", 2);
  absl::StatusOr<std::string> fingerprint = ModelFingerprint(args->get("--model-dir"));
  if (!fingerprint.ok()) return Fail(std::string(fingerprint.status().message()), 1);
  self.model_fingerprint = *fingerprint;

  std::string id;
  if (self.node == 0) {
    id = RandomGroupId();
    absl::StatusOr<std::unique_ptr<BootstrapLeader>> server =
        BootstrapLeader::Start(leader, grpc::InsecureServerCredentials(), self, id);
    if (!server.ok()) return Fail(std::string(server.status().message()), 1);
    std::fprintf(stderr, "node 0 of %d: listening on %s, waiting for %d node(s)\n", self.nodes,
                 leader.c_str(), self.nodes - 1);
    if (absl::Status s = (*server)->WaitForWorkers(timeout); !s.ok()) {
      return Fail(std::string(s.message()), 1);
    }
  } else {
    absl::StatusOr<std::string> got =
        JoinCluster(leader, grpc::InsecureChannelCredentials(), self, timeout);
    if (!got.ok()) return Fail(std::string(got.status().message()), 1);
    id = *got;
  }
  std::printf("node %d of %d: joined; group id %zu bytes, begins %s\n", self.node, self.nodes,
              id.size(), absl::BytesToHexString(id.substr(0, 8)).c_str());
  return 0;
}

}  // namespace

MOEGRAPH_CLI_COMMAND(cluster_bootstrap, "cluster-bootstrap",
                     "cluster-bootstrap --model-dir DIR --leader HOST:PORT --nodes N --node I",
                     "form a multi-node group: the leader hands the group id to every node",
                     RunClusterBootstrap);

}  // namespace moegraph
