#include "server/service/generation_service.h"

#include <algorithm>
#include <deque>
#include <mutex>
#include <optional>

#include "engine/common/logging.h"
#include "server/service/grpc_status.h"

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

// A Generate call that only reports a refusal status.
class RefusedCall final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
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
// the scheduler thread.
class GenerateCall final : public grpc::ServerWriteReactor<v1::GenerateResponse>,
                           public GenerationSink {
 public:
  GenerateCall(GenerationService* service, Scheduler* scheduler)
      : service_(service), scheduler_(scheduler) {
    service_->StreamStarted();
  }
  ~GenerateCall() override { service_->StreamDone(); }

  // Submits the request, or ends the call with the scheduler's refusal.
  void Begin(std::unique_ptr<GenerationRequest> request) {
    request_id_ = request->id;
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
      tokens_.push_back(std::move(event));
      kick = NeedsKickLocked();
    }
    if (kick) service_->writer_.Post(this);
  }

  void OnFinish(FinishEvent event) override {
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
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (writing_ || finish_called_) return;
      if (!tokens_.empty()) {
        out_.Clear();
        out_.set_request_id(request_id_);
        v1::TokenChunk* chunk = out_.mutable_chunk();
        std::string text;
        for (TokenEvent& t : tokens_) {
          chunk->add_token_ids(t.token_id);
          text += t.text;
          if (t.logprobs.has_value()) ToProto(*t.logprobs, chunk->add_logprobs());
        }
        chunk->set_text(std::move(text));
        tokens_.clear();
      } else if (final_.has_value()) {
        out_.Clear();
        out_.set_request_id(request_id_);
        v1::Final* f = out_.mutable_final();
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
      writing_ = true;
    }
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
    if (!done) scheduler_->Abort(request_id_);
  }

  GenerationService* const service_;
  Scheduler* const scheduler_;
  std::atomic<int> refs_{2};
  std::string request_id_;
  std::mutex mu_;
  std::deque<TokenEvent> tokens_;     // guarded by mu_
  std::optional<FinishEvent> final_;  // guarded by mu_
  bool writing_ = false;              // guarded by mu_
  bool finish_called_ = false;        // guarded by mu_
  bool scheduler_done_ = false;       // guarded by mu_
  bool kick_posted_ = false;          // guarded by mu_
  v1::GenerateResponse out_;          // the message in flight: only its writer touches it
};

void GenerationService::SetReady(Scheduler* scheduler, const TextCodec* codec,
                                 const ModelInfo& info, const RequestLimits& limits, int slots,
                                 int max_step_tokens) {
  scheduler_ = scheduler;
  codec_ = codec;
  limits_ = limits;
  model_info_.set_name(info.name);
  model_info_.set_model_type(info.model_type);
  // The context a request can really get: the state pool may hold less.
  model_info_.set_context_limit(limits.max_sequence_tokens > 0
                                    ? std::min(limits.context_limit, limits.max_sequence_tokens)
                                    : limits.context_limit);
  model_info_.set_vocab_size(info.vocab_size);
  model_info_.set_bos_token_id(info.bos_token_id);
  for (int id : info.eos_token_ids) model_info_.add_eos_token_ids(id);
  model_info_.add_devices(info.device);
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

grpc::ServerWriteReactor<v1::GenerateResponse>* GenerationService::Generate(
    grpc::CallbackServerContext* /*context*/, const v1::GenerateRequest* request) {
  absl::Status serving = CheckServing();
  if (!serving.ok()) return new RefusedCall(ToGrpcStatus(serving));
  const char* refusal = nullptr;
  absl::StatusOr<std::unique_ptr<GenerationRequest>> built =
      BuildGenerationRequest(*request, limits_, codec_, &refusal);
  if (!built.ok()) {
    if (refusal != nullptr) scheduler_->ReportRejected(refusal);
    LOG_VERBOSE << "refused request: " << built.status();
    return new RefusedCall(ToGrpcStatus(built.status()));
  }
  auto* call = new GenerateCall(this, scheduler_);
  call->Begin(std::move(*built));
  return call;
}

grpc::ServerUnaryReactor* GenerationService::GetModelInfo(grpc::CallbackServerContext* context,
                                                          const v1::GetModelInfoRequest*,
                                                          v1::ModelInfo* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status serving = CheckServing();
  if (serving.ok()) *response = model_info_;
  reactor->Finish(ToGrpcStatus(serving));
  return reactor;
}

grpc::ServerUnaryReactor* GenerationService::Tokenize(grpc::CallbackServerContext* context,
                                                      const v1::TokenizeRequest* request,
                                                      v1::TokenizeResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status = CheckServing();
  if (status.ok() && codec_ == nullptr) {
    status = absl::FailedPreconditionError("this server has no tokenizer");
  }
  if (status.ok()) {
    const bool add_bos = request->has_add_bos() ? request->add_bos() : codec_->default_add_bos();
    absl::StatusOr<std::vector<int32_t>> ids = codec_->Encode(request->text(), add_bos);
    if (ids.ok()) {
      response->mutable_token_ids()->Assign(ids->begin(), ids->end());
    } else {
      status = absl::InvalidArgumentError(absl::StrCat("text: ", ids.status().message()));
    }
  }
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* GenerationService::Abort(grpc::CallbackServerContext* context,
                                                   const v1::AbortRequest* request,
                                                   v1::AbortResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status;
  if (state_.load(std::memory_order_acquire) == State::kLoading) {
    status = absl::UnavailableError("the model is still loading; retry shortly");
  } else if (request->request_id().empty()) {
    status = absl::InvalidArgumentError("request_id: must not be empty");
  } else {
    response->set_found(scheduler_->Abort(request->request_id()));
  }
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace moegraph
