// `moegraph cluster-bootstrap`: the multi-node bootstrap on its own
// (server/cluster/bootstrap.h), one process per node: what a multi-process
// run on one host, or a LeaderWorkerSet, exercises before any GPU work.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "engine/common/cli_registry.h"
#include "engine/engine.h"
#include "grpcpp/grpcpp.h"
#include "server/client/cli_args.h"
#include "server/cluster/bootstrap.h"
#if MOEGRAPH_HAVE_CUDA
#include "engine/backend/cuda/nccl_group.h"
#endif

namespace moegraph {
namespace {

constexpr const char* kUsage =
    "usage: moegraph cluster-bootstrap --model-dir DIR [--leader HOST:PORT] [--nodes N]\n"
    "         [--node I] [--layout ep|layers|ep+layers] [--gpus-per-node G] [--timeout SECONDS]\n"
    "         [--nccl-devices cuda:0,cuda:1,...]\n"
    "\n"
    "Forms a group of N nodes (docs/multi-node.md): node 0 listens on --leader and,\n"
    "once the other N-1 nodes have joined with the same layout, GPUs per node and\n"
    "checkpoint (config.json and the weight files' names and sizes), hands each a\n"
    "fresh group id; every node prints its first 8 bytes (hex). Without the flags,\n"
    "a LeaderWorkerSet's environment is used: LWS_LEADER_ADDRESS (port 29431),\n"
    "LWS_GROUP_SIZE, LWS_WORKER_INDEX. Defaults: --layout ep, --gpus-per-node 1,\n"
    "--timeout 60. With --nccl-devices (a CUDA build), the group id is NCCL's\n"
    "(ncclGetUniqueId) and every node then creates one communicator per listed GPU\n"
    "(ncclCommInitRank, global rank = node x GPUs per node + index; --gpus-per-node\n"
    "defaults to the list's length) and checks an all-reduce over the whole group.\n"
    "Exit status 0 when the group formed, 1 when it did not (the message names\n"
    "the differing field, the missing nodes or NCCL's error), 2 for bad flags.\n"
    "The channel is plaintext: run it on a private network.\n";

constexpr int kDefaultControlPort = 29431;

// "cuda:0,cuda:1" -> {0, 1}; each entry cuda:N, no repeats (NCCL: one rank a GPU).
absl::StatusOr<std::vector<int>> ParseCudaDevices(const std::string& text) {
  std::vector<int> out;
  for (absl::string_view entry : absl::StrSplit(text, ',')) {
    int n = -1;
    if (!absl::ConsumePrefix(&entry, "cuda:") || !absl::SimpleAtoi(entry, &n) || n < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--nccl-devices: '", text, "' must list cuda:N entries, comma-separated"));
    }
    if (std::find(out.begin(), out.end(), n) != out.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--nccl-devices: cuda:", n, " appears twice (NCCL takes one rank a GPU)"));
    }
    out.push_back(n);
  }
  return out;
}

int Fail(const std::string& message, int code) {
  std::fprintf(stderr, "moegraph cluster-bootstrap: %s\n", message.c_str());
  return code;
}

int RunClusterBootstrap(int argc, char** argv) {
  absl::StatusOr<CliArgs> args =
      ParseCliArgs(argc, argv,
                   {"--model-dir", "--leader", "--nodes", "--node", "--layout", "--gpus-per-node",
                    "--timeout", "--nccl-devices"},
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
  std::vector<int> nccl_devices;
  if (args->has("--nccl-devices")) {
    absl::StatusOr<std::vector<int>> d = ParseCudaDevices(args->get("--nccl-devices"));
    if (!d.ok()) return Fail(std::string(d.status().message()), 2);
    nccl_devices = *d;
  }
  const long long listed = nccl_devices.empty() ? 1 : static_cast<long long>(nccl_devices.size());
  absl::StatusOr<long long> gpus = integer("--gpus-per-node", nullptr, listed, 1, 64);
  if (!gpus.ok()) return Fail(std::string(gpus.status().message()), 2);
  self.gpus_per_node = static_cast<int>(*gpus);
  if (!nccl_devices.empty() && self.gpus_per_node != listed) {
    return Fail(
        absl::StrCat("--gpus-per-node: ", self.gpus_per_node, " but --nccl-devices lists ", listed),
        2);
  }
#if !MOEGRAPH_HAVE_CUDA
  if (!nccl_devices.empty()) return Fail("--nccl-devices needs a build with CUDA", 2);
#endif
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
#if MOEGRAPH_HAVE_CUDA
    if (!nccl_devices.empty()) {
      absl::StatusOr<std::string> nccl_id = NewNcclGroupId();
      if (!nccl_id.ok()) return Fail(std::string(nccl_id.status().message()), 1);
      id = *nccl_id;
    }
#endif
    if (id.empty()) id = RandomGroupId();
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
  std::fflush(stdout);
#if MOEGRAPH_HAVE_CUDA
  if (!nccl_devices.empty()) {
    const int world = self.nodes * self.gpus_per_node, first = self.node * self.gpus_per_node;
    const absl::Time t0 = absl::Now();
    absl::StatusOr<std::unique_ptr<NcclComms>> comms =
        JoinNcclGroup(id, world, first, nccl_devices);
    if (!comms.ok()) return Fail(std::string(comms.status().message()), 1);
    const double init_ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
    if (absl::Status s = CheckNcclGroup(**comms, nccl_devices, world, first); !s.ok()) {
      return Fail(std::string(s.message()), 1);
    }
    std::printf(
        "node %d of %d: NCCL ranks %d-%d of %d up in %.0f ms; all-reduce of rank + 1 gave %d\n",
        self.node, self.nodes, first, first + self.gpus_per_node - 1, world, init_ms,
        world * (world + 1) / 2);
  }
#endif
  return 0;
}

}  // namespace

MOEGRAPH_CLI_COMMAND(cluster_bootstrap, "cluster-bootstrap",
                     "cluster-bootstrap --model-dir DIR --leader HOST:PORT --nodes N --node I",
                     "form a multi-node group: the leader hands the group id to every node",
                     RunClusterBootstrap);

}  // namespace moegraph
