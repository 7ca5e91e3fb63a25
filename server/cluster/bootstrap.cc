#include "server/cluster/bootstrap.h"

#include <openssl/evp.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpcpp/grpcpp.h"
#include "moegraph/cluster/v1/bootstrap.grpc.pb.h"
#include "server/service/grpc_status.h"

namespace moegraph {

namespace cv1 = ::moegraph::cluster::v1;

std::string FirstMismatch(const NodeIdentity& leader, const NodeIdentity& worker) {
  auto differs = [&](const char* field, const auto& a, const auto& b) -> std::string {
    if (a == b) return "";
    return absl::StrCat(field, ": leader '", a, "', node ", worker.node, " '", b, "'");
  };
  for (std::string m :
       {differs("nodes", leader.nodes, worker.nodes),
        differs("gpus_per_node", leader.gpus_per_node, worker.gpus_per_node),
        differs("layout", leader.layout, worker.layout),
        differs("model_fingerprint", leader.model_fingerprint, worker.model_fingerprint)}) {
    if (!m.empty()) return m;
  }
  return "";
}

absl::StatusOr<std::string> ModelFingerprint(const std::string& model_dir) {
  namespace fs = std::filesystem;
  const fs::path dir(model_dir);
  std::ifstream config(dir / "config.json", std::ios::binary);
  if (!config) return absl::NotFoundError(absl::StrCat(model_dir, ": no config.json"));
  std::stringstream text;
  text << config.rdbuf();
  std::vector<std::string> files;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    const bool weights =
        e.path().extension() == ".safetensors" || name == "model.safetensors.index.json";
    if (weights && e.is_regular_file()) {
      files.push_back(absl::StrCat(name, " ", e.file_size()));
    }
  }
  if (ec) return absl::InternalError(absl::StrCat(model_dir, ": ", ec.message()));
  std::sort(files.begin(), files.end());
  const std::string input = absl::StrCat(text.str(), "\n", absl::StrJoin(files, "\n"));
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(input.data(), input.size(), digest, &len, EVP_sha256(), nullptr) != 1) {
    return absl::InternalError("ModelFingerprint: SHA-256 failed");
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), static_cast<size_t>(len)));
}

std::string RandomGroupId(size_t bytes) {
  std::random_device rd;
  std::string id(bytes, '\0');
  for (char& c : id) c = static_cast<char>(rd() & 0xff);
  return id;
}

// Join handlers wait on one condition for the group to fill.
class BootstrapLeader::Service final : public cv1::Bootstrap::Service {
 public:
  Service(NodeIdentity self, std::string group_id)
      : self_(std::move(self)), group_id_(std::move(group_id)) {}

  grpc::Status Join(grpc::ServerContext* context, const cv1::JoinRequest* request,
                    cv1::JoinReply* reply) override {
    NodeIdentity worker;
    worker.nodes = static_cast<int>(request->nodes());
    worker.node = static_cast<int>(request->node());
    worker.gpus_per_node = static_cast<int>(request->gpus_per_node());
    worker.layout = request->layout();
    worker.model_fingerprint = request->model_fingerprint();
    if (worker.node < 1 || worker.node >= self_.nodes) {
      return ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
          "node: ", worker.node, " is outside 1..", self_.nodes - 1, " (0 is the leader)")));
    }
    if (std::string m = FirstMismatch(self_, worker); !m.empty()) {
      return ToGrpcStatus(absl::FailedPreconditionError(m));
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (!joined_.insert(worker.node).second) {
      return ToGrpcStatus(
          absl::AlreadyExistsError(absl::StrCat("node: ", worker.node, " already joined")));
    }
    changed_.notify_all();
    // Wait for the rest, waking now and then to notice a cancelled call.
    while (!full() && !stopping_ && !context->IsCancelled()) {
      changed_.wait_for(lock, std::chrono::milliseconds(50));
    }
    if (!full()) {
      joined_.erase(worker.node);  // it may come again
      changed_.notify_all();
      return ToGrpcStatus(stopping_ ? absl::UnavailableError("the leader gave up waiting")
                                    : absl::CancelledError("join cancelled"));
    }
    reply->set_group_id(group_id_);
    reply->set_nodes(static_cast<uint32_t>(self_.nodes));
    return grpc::Status::OK;
  }

  absl::Status WaitForWorkers(absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
    if (changed_.wait_until(lock, deadline, [&] { return full(); })) return absl::OkStatus();
    std::vector<int> missing;
    for (int n = 1; n < self_.nodes; ++n) {
      if (!joined_.contains(n)) missing.push_back(n);
    }
    return absl::DeadlineExceededError(
        absl::StrCat("cluster bootstrap: node(s) ", absl::StrJoin(missing, ", "),
                     " did not join within ", absl::FormatDuration(timeout)));
  }

  std::vector<int> joined() const {
    std::lock_guard<std::mutex> lock(mu_);
    return std::vector<int>(joined_.begin(), joined_.end());
  }

  void Stop() {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    changed_.notify_all();
  }

 private:
  bool full() const { return static_cast<int>(joined_.size()) == self_.nodes - 1; }

  const NodeIdentity self_;
  const std::string group_id_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::set<int> joined_;
  bool stopping_ = false;
};

absl::StatusOr<std::unique_ptr<BootstrapLeader>> BootstrapLeader::Start(
    const std::string& address, std::shared_ptr<grpc::ServerCredentials> credentials,
    const NodeIdentity& self, const std::string& group_id) {
  if (self.node != 0) return absl::InvalidArgumentError("BootstrapLeader: node must be 0");
  if (self.nodes < 1) return absl::InvalidArgumentError("BootstrapLeader: nodes must be >= 1");
  std::unique_ptr<BootstrapLeader> leader(new BootstrapLeader());
  leader->service_ = std::make_unique<Service>(self, group_id);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, std::move(credentials), &leader->port_);
  builder.RegisterService(leader->service_.get());
  leader->server_ = builder.BuildAndStart();
  if (leader->server_ == nullptr || leader->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cluster bootstrap: cannot listen on ", address));
  }
  return leader;
}

BootstrapLeader::~BootstrapLeader() {
  if (service_) service_->Stop();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
}

std::vector<int> BootstrapLeader::joined() const { return service_->joined(); }

absl::Status BootstrapLeader::WaitForWorkers(absl::Duration timeout) {
  return service_->WaitForWorkers(timeout);
}

absl::StatusOr<std::string> JoinCluster(const std::string& leader_address,
                                        std::shared_ptr<grpc::ChannelCredentials> credentials,
                                        const NodeIdentity& self, absl::Duration timeout) {
  auto channel = grpc::CreateChannel(leader_address, std::move(credentials));
  auto stub = cv1::Bootstrap::NewStub(channel);
  cv1::JoinRequest request;
  request.set_node(static_cast<uint32_t>(self.node));
  request.set_nodes(static_cast<uint32_t>(self.nodes));
  request.set_gpus_per_node(static_cast<uint32_t>(self.gpus_per_node));
  request.set_layout(self.layout);
  request.set_model_fingerprint(self.model_fingerprint);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout));
  context.set_wait_for_ready(true);  // the leader may start after us
  cv1::JoinReply reply;
  const grpc::Status status = stub->Join(&context, request, &reply);
  if (!status.ok()) {
    const absl::Status s = FromGrpcStatus(status);
    return absl::Status(s.code(), absl::StrCat("joining ", leader_address, ": ", s.message()));
  }
  return reply.group_id();
}

}  // namespace moegraph
