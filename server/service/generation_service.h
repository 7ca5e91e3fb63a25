// moegraph.v1.Generation over gRPC's callback API: one reactor per Generate
// stream, fed by the scheduler through a GenerationSink; client cancellation
// and deadlines abort the request in the scheduler. The methods take and give
// raw byte buffers so that a request that does not parse gets
// INVALID_ARGUMENT with a message (wire_message.h).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "moegraph/v1/generation.grpc.pb.h"
#include "server/scheduler/scheduler.h"
#include "server/service/caller_identity.h"
#include "server/service/request_builder.h"
#include "server/text/text_codec.h"

namespace moegraph {

class GenerateCall;

// Per-stream output bounds (ServerConfig's max_message_bytes and
// max_stream_backlog_bytes).
struct StreamLimits {
  size_t max_message_bytes = 64 << 10;
  size_t max_backlog_bytes = 1 << 20;
};

// The raw-buffer form of every method of moegraph.v1.Generation.
using GenerationRawService = v1::Generation::WithRawCallbackMethod_Generate<
    v1::Generation::WithRawCallbackMethod_GetModelInfo<
        v1::Generation::WithRawCallbackMethod_Tokenize<
            v1::Generation::WithRawCallbackMethod_Abort<v1::Generation::Service>>>>;

// One thread that starts the first write of idle streams, off the scheduler
// thread (later writes start from the completion of the previous one, on
// gRPC's threads).
class StreamWriter {
 public:
  StreamWriter();
  ~StreamWriter();  // runs what is posted, then joins
  // `call` holds a reference for this; Kick() drops it.
  void Post(GenerateCall* call);

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<GenerateCall*> posted_;  // guarded by mu_
  bool stop_ = false;                  // guarded by mu_
  std::thread thread_;
};

class GenerationService final : public GenerationRawService {
 public:
  // The full service name, also its readiness name in grpc.health.v1.
  static constexpr const char* kServiceName = "moegraph.v1.Generation";

  // `identity` (may be null: every caller anonymous) must outlive the service.
  explicit GenerationService(const CallerIdentity* identity = nullptr) : identity_(identity) {}

  // Starts serving. `scheduler`, `codec` (may be null) and what `info`
  // describes must outlive every call; call once, before any Drain.
  void SetReady(Scheduler* scheduler, const TextCodec* codec, const ModelInfo& info,
                const RequestLimits& limits, const StreamLimits& stream_limits, int slots,
                int max_step_tokens);
  // New calls get UNAVAILABLE from now on; running streams go on.
  void SetDraining();
  // Waits until every Generate stream has delivered its final status (the
  // client has it, or is gone), or until `deadline`; true when all are done.
  bool WaitForStreams(std::chrono::steady_clock::time_point deadline);

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;

 private:
  enum class State { kLoading, kServing, kDraining };
  // OK when serving; UNAVAILABLE with the reason otherwise.
  absl::Status CheckServing() const;
  // The caller's identity, or UNAUTHENTICATED.
  absl::StatusOr<std::string> Identify(const grpc::CallbackServerContext& context) const;

  friend class GenerateCall;
  void StreamStarted();
  void StreamDone();

  const CallerIdentity* const identity_;
  std::atomic<State> state_{State::kLoading};
  StreamWriter writer_;
  std::mutex streams_mu_;
  std::condition_variable streams_cv_;
  int open_streams_ = 0;  // guarded by streams_mu_
  // Written once by SetReady before state_ turns kServing (release), read
  // after an acquire load of state_.
  Scheduler* scheduler_ = nullptr;
  const TextCodec* codec_ = nullptr;
  v1::ModelInfo model_info_;
  RequestLimits limits_;
  StreamLimits stream_limits_;
};

// The peer's address without its port ("ipv4:10.0.0.7"), the identity the
// queue's per-peer share counts by until calls carry a real one.
std::string PeerAddress(const std::string& peer);

}  // namespace moegraph
