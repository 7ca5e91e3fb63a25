// The multi-node bootstrap over real gRPC on localhost (server/cluster): the
// group forms only when every node has joined with the leader's
// configuration, every node gets the leader's id, and refusals name the field
// or the missing nodes.
#include <catch2/catch.hpp>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "server/cluster/bootstrap.h"

namespace moegraph {
namespace {

NodeIdentity Node(int node, int nodes) {
  NodeIdentity n;
  n.node = node;
  n.nodes = nodes;
  n.gpus_per_node = 8;
  n.layout = "ep";
  n.model_fingerprint = "abc";
  return n;
}

std::unique_ptr<BootstrapLeader> StartLeader(int nodes, const std::string& id) {
  auto leader =
      BootstrapLeader::Start("127.0.0.1:0", grpc::InsecureServerCredentials(), Node(0, nodes), id);
  REQUIRE(leader.ok());
  REQUIRE((*leader)->port() > 0);
  return std::move(*leader);
}

absl::StatusOr<std::string> Join(int port, const NodeIdentity& n, absl::Duration timeout) {
  return JoinCluster(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials(), n,
                     timeout);
}

// Polls until the leader has exactly `nodes` waiting.
void AwaitJoined(const BootstrapLeader& leader, const std::vector<int>& nodes) {
  for (int i = 0; i < 400 && leader.joined() != nodes; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  REQUIRE(leader.joined() == nodes);
}

TEST_CASE("cluster bootstrap: every node gets the leader's id once all have joined", "[cluster]") {
  const std::string id = RandomGroupId();
  REQUIRE(id.size() == 128);
  CHECK(RandomGroupId() != id);
  auto leader = StartLeader(4, id);
  std::vector<std::future<absl::StatusOr<std::string>>> joins;
  for (int n : {3, 1}) {
    joins.push_back(
        std::async(std::launch::async, Join, leader->port(), Node(n, 4), absl::Seconds(20)));
  }
  // Two of three workers: the group is not formed, and the leader says who is missing.
  AwaitJoined(*leader, {1, 3});
  const absl::Status partial = leader->WaitForWorkers(absl::Milliseconds(300));
  CHECK(partial.code() == absl::StatusCode::kDeadlineExceeded);
  CHECK(std::string(partial.message()).find("node(s) 2 did not join") != std::string::npos);
  joins.push_back(
      std::async(std::launch::async, Join, leader->port(), Node(2, 4), absl::Seconds(20)));
  REQUIRE(leader->WaitForWorkers(absl::Seconds(20)).ok());
  for (auto& j : joins) {
    absl::StatusOr<std::string> got = j.get();
    INFO(got.status());
    REQUIRE(got.ok());
    CHECK(*got == id);
  }
}

TEST_CASE("cluster bootstrap: a node with another configuration is refused by field", "[cluster]") {
  auto leader = StartLeader(3, RandomGroupId());
  NodeIdentity other = Node(1, 3);
  other.layout = "layers";
  absl::StatusOr<std::string> got = Join(leader->port(), other, absl::Seconds(10));
  CHECK(got.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(std::string(got.status().message()).find("layout: leader 'ep', node 1 'layers'") !=
        std::string::npos);
  other = Node(1, 3);
  other.model_fingerprint = "another checkpoint";
  got = Join(leader->port(), other, absl::Seconds(10));
  CHECK(std::string(got.status().message()).find("model_fingerprint") != std::string::npos);
  other = Node(1, 4);
  got = Join(leader->port(), other, absl::Seconds(10));
  CHECK(std::string(got.status().message()).find("nodes: leader '3', node 1 '4'") !=
        std::string::npos);
  got = Join(leader->port(), Node(3, 3), absl::Seconds(10));
  CHECK(got.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(got.status().message()).find("outside 1..2") != std::string::npos);
  // A node index taken while its first holder waits for the group.
  auto first = std::async(std::launch::async, Join, leader->port(), Node(1, 3), absl::Seconds(20));
  AwaitJoined(*leader, {1});
  const absl::Status dup = Join(leader->port(), Node(1, 3), absl::Seconds(5)).status();
  CHECK(dup.code() == absl::StatusCode::kAlreadyExists);
  CHECK(std::string(dup.message()).find("node: 1 already joined") != std::string::npos);
  REQUIRE(Join(leader->port(), Node(2, 3), absl::Seconds(20)).ok());
  CHECK(first.get().ok());
}

TEST_CASE("cluster bootstrap: a worker that gives up can join again", "[cluster]") {
  auto leader = StartLeader(3, "id");
  // Node 1 times out waiting for node 2; its place is freed.
  CHECK(Join(leader->port(), Node(1, 3), absl::Milliseconds(400)).status().code() ==
        absl::StatusCode::kDeadlineExceeded);
  AwaitJoined(*leader, {});
  auto again = std::async(std::launch::async, Join, leader->port(), Node(1, 3), absl::Seconds(20));
  auto last = std::async(std::launch::async, Join, leader->port(), Node(2, 3), absl::Seconds(20));
  CHECK(again.get().value_or("") == "id");
  CHECK(last.get().value_or("") == "id");
  CHECK(leader->WaitForWorkers(absl::Seconds(1)).ok());
}

TEST_CASE("cluster bootstrap: the model fingerprint follows config.json and the weight files",
          "[cluster]") {
  const std::string dir = std::string(MOEGRAPH_SOURCE_DIR) + "/tests/fixtures/dsv4-tiny";
  absl::StatusOr<std::string> a = ModelFingerprint(dir), b = ModelFingerprint(dir);
  REQUIRE(a.ok());
  CHECK(a->size() == 64);
  CHECK(*a == *b);
  absl::StatusOr<std::string> other =
      ModelFingerprint(std::string(MOEGRAPH_SOURCE_DIR) + "/tests/fixtures/dsv4-topk2");
  REQUIRE(other.ok());
  CHECK(*other != *a);
  CHECK(ModelFingerprint("/nonexistent").status().code() == absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace moegraph
