// The multi-node bootstrap (docs/multi-node.md): node 0, the leader, serves
// moegraph.cluster.v1.Bootstrap on its control address; every other node
// joins with its configuration and, once all N nodes have joined with the
// same one, receives the group id (ncclUniqueId's bytes on GPUs) every rank
// then creates its communicator with. Mismatches are refused naming the
// field; a node that never comes is named when the leader gives up.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace moegraph {

// What every node of a group must agree on, and which node this is.
struct NodeIdentity {
  int nodes = 1;  // group size
  int node = 0;   // 0 = leader
  int gpus_per_node = 1;
  std::string layout = "ep";
  std::string model_fingerprint;  // ModelFingerprint()
};

// The first field of `worker` that differs from `leader`'s, as
// "layout: leader 'ep', node 2 'layers'"; empty when they agree.
std::string FirstMismatch(const NodeIdentity& leader, const NodeIdentity& worker);

// SHA-256 (hex) of config.json and of the names and sizes of the weight
// files (*.safetensors, the index): equal on nodes that load the same
// checkpoint, cheap to compute (nothing but config.json is read).
absl::StatusOr<std::string> ModelFingerprint(const std::string& model_dir);

// A fresh group id of `bytes` random bytes (ncclUniqueId is 128).
std::string RandomGroupId(size_t bytes = 128);

class BootstrapLeader {
 public:
  // Listens on `address` (host:port; port 0 picks one, see port()).
  static absl::StatusOr<std::unique_ptr<BootstrapLeader>> Start(
      const std::string& address, std::shared_ptr<grpc::ServerCredentials> credentials,
      const NodeIdentity& self, const std::string& group_id);
  ~BootstrapLeader();  // shuts down: Joins still waiting get UNAVAILABLE

  int port() const { return port_; }
  // The worker nodes joined so far (and waiting for the rest), ascending.
  std::vector<int> joined() const;
  // Blocks until every other node has joined (OK), or `timeout` passed:
  // DEADLINE_EXCEEDED naming the nodes that did not join.
  absl::Status WaitForWorkers(absl::Duration timeout);

 private:
  class Service;
  BootstrapLeader() = default;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// A worker's side: joins the leader at `leader_address`, waiting for it to
// come up, and returns the group id once every node has joined; the
// leader's refusal (its message names the field) or DEADLINE_EXCEEDED after
// `timeout`.
absl::StatusOr<std::string> JoinCluster(const std::string& leader_address,
                                        std::shared_ptr<grpc::ChannelCredentials> credentials,
                                        const NodeIdentity& self, absl::Duration timeout);

}  // namespace moegraph
