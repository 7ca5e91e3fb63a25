#include "server/service/generation_service.h"

#include <algorithm>
#include <deque>
#include <mutex>
#include <optional>
#include <string>

#include "absl/strings/str_split.h"
#include "engine/common/logging.h"
#include "server/service/grpc_status.h"
#include "server/service/wire_message.h"

namespace moegraph {
namespace {

v1::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kAbort:
      return v1::FINISH_REASON_ABORT;
    case FinishReason::kError:
      return v1::FINISH_REASON_ERROR;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

void ToProto(const sampling::SampleResult& r, v1::TokenLogprobs* out) {
  out->mutable_chosen()->set_token_id(r.token_id);
  out->mutable_chosen()->set_logprob(r.logprob);
  for (const sampling::TokenLogprob& t : r.top) {
    v1::TokenLogprob* p = out->add_top();
    p->set_token_id(t.token_id);
    p->set_logprob(t.logprob);
  }
}

// An upper bound on the bytes `t` adds to a TokenChunk: its id (a varint of
// at most 5 bytes, and a byte of slack), its text, and its logprobs (each
// TokenLogprob is at most 14 bytes with its tag and length; 4 for the
// TokenLogprobs' own tag and length).
size_t EventBytes(const TokenEvent& t) {
  size_t n = 6 + t.text.size();
  if (t.logprobs.has_value()) n += 4 + 14 * (1 + t.logprobs->top.size());
  return n;
}

// A GenerateResponse's bytes beside its tokens': the request id, and the
// tags and lengths of the chunk, its ids, text and logprobs.
size_t ChunkOverheadBytes(const std::string& request_id) { return request_id.size() + 32; }

// A Generate call that only reports a refusal status.
class RefusedCall final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit RefusedCall(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

// One Generate stream; also the request's sink in the scheduler. Two
// references keep it alive: gRPC's (dropped in OnDone) and the scheduler's
// (dropped when it destroys the request, after OnFinish, or at once when
// Submit refuses it). One write is in flight at a time; tokens that arrive
// meanwhile are merged into the next chunk, so a slow client never blocks
// the scheduler thread. No message is larger than max_message_bytes (tokens
// that piled up go in several), and once more than max_backlog_bytes wait,
// Backlogged() pauses the sequence in the scheduler until the client reads.
class GenerateCall final : public grpc::ServerWriteReactor<grpc::ByteBuffer>,
                           public GenerationSink {
 public:
  GenerateCall(GenerationService* service, Scheduler* scheduler, const StreamLimits& limits)
      : service_(service), scheduler_(scheduler), limits_(limits) {
    service_->StreamStarted();
  }
  ~GenerateCall() override { service_->StreamDone(); }

  // Submits the request, or ends the call with the scheduler's refusal.
  void Begin(std::unique_ptr<GenerationRequest> request) {
    request_id_ = request->id;
    owner_ = request->owner;
    request->sink = std::shared_ptr<GenerationSink>(
        this, [](GenerationSink* sink) { static_cast<GenerateCall*>(sink)->Unref(); });
    absl::Status status = scheduler_->Submit(std::move(request));
    if (!status.ok()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        finish_called_ = true;
        scheduler_done_ = true;  // never abort by id: it may name another request
      }
      Finish(ToGrpcStatus(status));
    }
  }

  // Scheduler thread: queue the event; the write starts on the service's
  // writer thread (or when the write in flight completes), because starting
  // a write does the socket work inline and would stall the next step.
  void OnToken(TokenEvent event) override {
    bool kick;
    {
      std::lock_guard<std::mutex> lock(mu_);
      backlog_bytes_.store(backlog_bytes_.load(std::memory_order_relaxed) + EventBytes(event),
                           std::memory_order_relaxed);
      tokens_.push_back(std::move(event));
      kick = NeedsKickLocked();
    }
    if (kick) service_->writer_.Post(this);
  }

  void OnFinish(FinishEvent event) override {
    if (event.stalled) {
      // The client is not reading: queuing the final message would not
      // reach it. End the call now with the reason.
      bool finish_now = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        scheduler_done_ = true;
        tokens_.clear();
        backlog_bytes_.store(0, std::memory_order_relaxed);
        if (!finish_called_) finish_called_ = finish_now = true;
      }
      if (finish_now) {
        Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, event.error_message));
      }
      return;
    }
    bool kick;
    {
      std::lock_guard<std::mutex> lock(mu_);
      final_ = std::move(event);
      scheduler_done_ = true;
      kick = NeedsKickLocked();
    }
    if (kick) service_->writer_.Post(this);
  }

  // Writer thread: a posted kick (holds a reference).
  void Kick() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      kick_posted_ = false;
    }
    Pump();
    Unref();
  }

  void OnWriteDone(bool ok) override {
    bool finish_now = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      if (!ok && !finish_called_) {
        // The client is gone (cancelled or broken); stop writing.
        finish_called_ = true;
        finish_now = true;
      }
    }
    if (finish_now) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the stream was cancelled"));
      return;
    }
    Pump();
  }

  bool Backlogged() const override {
    return backlog_bytes_.load(std::memory_order_relaxed) > limits_.max_backlog_bytes;
  }

  void OnCancel() override { AbortInScheduler(); }

  void OnDone() override {
    AbortInScheduler();
    Unref();
  }

 private:
  // True when nobody will start the next write: takes a reference for the
  // kick that the caller must post.
  bool NeedsKickLocked() {
    if (writing_ || finish_called_ || kick_posted_) return false;
    kick_posted_ = true;
    refs_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // Starts the next write unless one is in flight or the call is finishing.
  void Pump() {
    bool last = false;
    bool resumed = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (writing_ || finish_called_) return;
      msg_.Clear();
      msg_.set_request_id(request_id_);
      if (!tokens_.empty()) {
        v1::TokenChunk* chunk = msg_.mutable_chunk();
        std::string text;
        size_t bytes = ChunkOverheadBytes(request_id_);
        size_t taken = 0;
        size_t taken_bytes = 0;
        // At least one token a message, however large its logprobs.
        for (const TokenEvent& t : tokens_) {
          const size_t b = EventBytes(t);
          if (taken > 0 && bytes + b > limits_.max_message_bytes) break;
          bytes += b;
          taken_bytes += b;
          ++taken;
          chunk->add_token_ids(t.token_id);
          text += t.text;
          if (t.logprobs.has_value()) ToProto(*t.logprobs, chunk->add_logprobs());
        }
        chunk->set_text(std::move(text));
        tokens_.erase(tokens_.begin(), tokens_.begin() + static_cast<std::ptrdiff_t>(taken));
        const size_t before = backlog_bytes_.load(std::memory_order_relaxed);
        const size_t after = before - std::min(before, taken_bytes);
        backlog_bytes_.store(after, std::memory_order_relaxed);
        resumed = before > limits_.max_backlog_bytes && after <= limits_.max_backlog_bytes &&
                  !scheduler_done_;
      } else if (final_.has_value()) {
        v1::Final* f = msg_.mutable_final();
        f->set_finish_reason(ToProto(final_->reason));
        if (final_->stop_string.has_value()) f->set_stop_string(*final_->stop_string);
        if (final_->stop_token_id.has_value()) f->set_stop_token_id(*final_->stop_token_id);
        f->mutable_usage()->set_prompt_tokens(final_->prompt_tokens);
        f->mutable_usage()->set_completion_tokens(final_->completion_tokens);
        f->mutable_timings()->set_queue_seconds(final_->queue_seconds);
        f->mutable_timings()->set_time_to_first_token_seconds(final_->ttft_seconds);
        f->mutable_timings()->set_total_seconds(final_->total_seconds);
        f->set_error_message(final_->error_message);
        final_.reset();
        last = true;
        finish_called_ = true;
      } else {
        return;
      }
      SerializeWireMessage(msg_, &out_);
      writing_ = true;
    }
    if (resumed) scheduler_->Wake();
    if (last) {
      StartWriteAndFinish(&out_, grpc::WriteOptions(), grpc::Status::OK);
    } else {
      StartWrite(&out_);
    }
  }

  void AbortInScheduler() {
    bool done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      done = scheduler_done_;
    }
    if (!done) scheduler_->Abort(owner_, request_id_);
  }

  GenerationService* const service_;
  Scheduler* const scheduler_;
  const StreamLimits limits_;
  std::atomic<int> refs_{2};
  std::string request_id_;
  std::string owner_;
  std::mutex mu_;
  std::deque<TokenEvent> tokens_;     // guarded by mu_
  std::optional<FinishEvent> final_;  // guarded by mu_
  bool writing_ = false;              // guarded by mu_
  bool finish_called_ = false;        // guarded by mu_
  bool scheduler_done_ = false;       // guarded by mu_
  bool kick_posted_ = false;          // guarded by mu_
  // EventBytes of tokens_; written under mu_, read by Backlogged without it.
  std::atomic<size_t> backlog_bytes_{0};
  v1::GenerateResponse msg_;  // built under mu_ before each write
  grpc::ByteBuffer out_;      // the message in flight: only its writer touches it
};

void GenerationService::SetReady(Scheduler* scheduler, const TextCodec* codec,
                                 const ModelInfo& info, const RequestLimits& limits,
                                 const StreamLimits& stream_limits, int slots,
                                 int max_step_tokens) {
  scheduler_ = scheduler;
  codec_ = codec;
  limits_ = limits;
  stream_limits_ = stream_limits;
  model_info_.set_name(info.name);
  model_info_.set_model_type(info.model_type);
  // The context a request can really get: the state pool may hold less.
  model_info_.set_context_limit(limits.max_sequence_tokens > 0
                                    ? std::min(limits.context_limit, limits.max_sequence_tokens)
                                    : limits.context_limit);
  model_info_.set_vocab_size(info.vocab_size);
  model_info_.set_bos_token_id(info.bos_token_id);
  for (int id : info.eos_token_ids) model_info_.add_eos_token_ids(id);
  // Several ranks list their devices with commas (docs/expert-parallel.md).
  for (absl::string_view device : absl::StrSplit(info.device, ',')) {
    model_info_.add_devices(std::string(device));
  }
  model_info_.set_layout(info.layout);
  model_info_.set_num_layers(info.num_layers);
  model_info_.set_hidden_size(info.hidden_size);
  model_info_.set_slots(slots);
  model_info_.set_max_step_tokens(max_step_tokens);
  state_.store(State::kServing, std::memory_order_release);
}

void GenerationService::SetDraining() { state_.store(State::kDraining, std::memory_order_release); }

StreamWriter::StreamWriter() : thread_([this] { Run(); }) {}

StreamWriter::~StreamWriter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void StreamWriter::Post(GenerateCall* call) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    posted_.push_back(call);
  }
  cv_.notify_one();
}

void StreamWriter::Run() {
  std::vector<GenerateCall*> batch;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !posted_.empty(); });
      if (posted_.empty()) return;
      batch.swap(posted_);
    }
    for (GenerateCall* call : batch) call->Kick();
    batch.clear();
  }
}

void GenerationService::StreamStarted() {
  std::lock_guard<std::mutex> lock(streams_mu_);
  ++open_streams_;
}

void GenerationService::StreamDone() {
  {
    std::lock_guard<std::mutex> lock(streams_mu_);
    --open_streams_;
  }
  streams_cv_.notify_all();
}

bool GenerationService::WaitForStreams(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(streams_mu_);
  return streams_cv_.wait_until(lock, deadline, [&] { return open_streams_ == 0; });
}

absl::Status GenerationService::CheckServing() const {
  switch (state_.load(std::memory_order_acquire)) {
    case State::kLoading:
      return absl::UnavailableError("the model is still loading; retry shortly");
    case State::kDraining:
      return absl::UnavailableError("the server is shutting down and accepts no new requests");
    case State::kServing:
      break;
  }
  return absl::OkStatus();
}

std::string PeerAddress(const std::string& peer) {
  // "ipv4:1.2.3.4:567", "ipv6:[::1]:567", "unix:/path": drop a trailing port.
  const size_t colon = peer.rfind(':');
  const size_t first = peer.find(':');
  if (colon == std::string::npos || colon == first) return peer;
  for (size_t i = colon + 1; i < peer.size(); ++i) {
    if (peer[i] < '0' || peer[i] > '9') return peer;
  }
  return peer.substr(0, colon);
}

absl::StatusOr<std::string> GenerationService::Identify(
    const grpc::CallbackServerContext& context) const {
  if (identity_ == nullptr) return std::string();
  return identity_->Identify(context);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerationService::Generate(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* wire) {
  absl::StatusOr<std::string> owner = Identify(*context);
  if (!owner.ok()) return new RefusedCall(ToGrpcStatus(owner.status()));
  absl::Status serving = CheckServing();
  if (!serving.ok()) return new RefusedCall(ToGrpcStatus(serving));
  v1::GenerateRequest request;
  if (absl::Status parsed = ParseWireMessage(*wire, &request); !parsed.ok()) {
    return new RefusedCall(ToGrpcStatus(parsed));
  }
  const char* refusal = nullptr;
  absl::StatusOr<std::unique_ptr<GenerationRequest>> built =
      BuildGenerationRequest(request, limits_, codec_, &refusal);
  if (!built.ok()) {
    if (refusal != nullptr) scheduler_->ReportRejected(refusal);
    LOG_VERBOSE << "refused request: " << built.status();
    return new RefusedCall(ToGrpcStatus(built.status()));
  }
  (*built)->owner = *owner;
  // One share of the queue per identity; anonymous callers, having none,
  // get one per IP address.
  (*built)->queue_share = owner->empty() ? PeerAddress(context->peer()) : *owner;
  auto* call = new GenerateCall(this, scheduler_, stream_limits_);
  call->Begin(std::move(*built));
  return call;
}

grpc::ServerUnaryReactor* GenerationService::GetModelInfo(grpc::CallbackServerContext* context,
                                                          const grpc::ByteBuffer* wire,
                                                          grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status = Identify(*context).status();
  if (status.ok()) status = CheckServing();
  v1::GetModelInfoRequest request;
  if (status.ok()) status = ParseWireMessage(*wire, &request);
  if (status.ok()) SerializeWireMessage(model_info_, response);
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* GenerationService::Tokenize(grpc::CallbackServerContext* context,
                                                      const grpc::ByteBuffer* wire,
                                                      grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status = Identify(*context).status();
  if (status.ok()) status = CheckServing();
  v1::TokenizeRequest request;
  if (status.ok()) status = ParseWireMessage(*wire, &request);
  if (status.ok() && codec_ == nullptr) {
    status = absl::FailedPreconditionError("this server has no tokenizer");
  }
  if (status.ok()) {
    // Bounded as a Generate prompt: the byte limit, then the context limit.
    const bool add_bos = request.has_add_bos() ? request.add_bos() : codec_->default_add_bos();
    absl::StatusOr<std::vector<int32_t>> ids =
        EncodeBounded(*codec_, request.text(), add_bos, limits_.context_limit, limits_, "text");
    if (ids.ok()) {
      v1::TokenizeResponse out;
      out.mutable_token_ids()->Assign(ids->begin(), ids->end());
      SerializeWireMessage(out, response);
    } else {
      status = ids.status();
    }
  }
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* GenerationService::Abort(grpc::CallbackServerContext* context,
                                                   const grpc::ByteBuffer* wire,
                                                   grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<std::string> owner = Identify(*context);
  absl::Status status = owner.status();
  v1::AbortRequest request;
  if (status.ok() && state_.load(std::memory_order_acquire) == State::kLoading) {
    status = absl::UnavailableError("the model is still loading; retry shortly");
  }
  if (status.ok()) status = ParseWireMessage(*wire, &request);
  if (status.ok() && request.request_id().empty()) {
    status = absl::InvalidArgumentError("request_id: must not be empty");
  }
  if (status.ok()) {
    v1::AbortResponse out;
    out.set_found(scheduler_->Abort(*owner, request.request_id()));
    SerializeWireMessage(out, response);
  }
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace moegraph
