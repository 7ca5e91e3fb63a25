#include "server/scheduler/scheduler.h"

#include <algorithm>
#include <cstddef>
#include <utility>

#include "absl/strings/str_format.h"
#include "engine/common/logging.h"

namespace moegraph {
namespace {

double SecondsBetween(SteadyClock::time_point a, SteadyClock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

struct Scheduler::Sequence {
  Sequence(std::unique_ptr<GenerationRequest> r, int s, std::unique_ptr<DetokenizerStream> detok)
      : request(std::move(r)), slot(s), output(request->stop, std::move(detok)) {}

  std::unique_ptr<GenerationRequest> request;
  int slot;
  SequenceOutput output;
  std::vector<int32_t> tokens;  // the prompt, then each generated token
  int prompt_len = 0;
  int num_computed = 0;    // tokens given to the engine (launched steps included)
  int awaiting = 0;        // launched samples not yet on the host (0-2)
  int inflight_steps = 0;  // launched steps naming this sequence, not yet collected
  sampling::PenaltyHistory history;
  SteadyClock::time_point scheduled{};
  SteadyClock::time_point first_token{};
  SteadyClock::time_point last_token{};
  bool finished = false;
  bool paused = false;  // left out of steps while the sink is backlogged
  SteadyClock::time_point paused_since{};

  bool prefilled() const { return num_computed >= prompt_len; }
};

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(Engine* engine, const TextCodec* codec,
                                                             const SchedulerOptions& options,
                                                             SchedulerObserver* observer) {
  if (engine == nullptr) return absl::InvalidArgumentError("scheduler: no engine");
  if (options.max_queue < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("scheduler: max_queue must be >= 0, got %d", options.max_queue));
  }
  if (options.max_step_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "scheduler: max_step_tokens must be >= 1, got %d", options.max_step_tokens));
  }
  const int budget = std::min(options.max_step_tokens, engine->max_step_tokens());
  if (budget < engine->num_slots()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "scheduler: the step token budget (%d) must cover one decode token per slot (%d slots)",
        budget, engine->num_slots()));
  }
  absl::StatusOr<std::unique_ptr<HostStepBuffers>> buffers =
      HostStepBuffers::Create(engine, budget, engine->num_slots());
  if (!buffers.ok()) return buffers.status();
  return std::unique_ptr<Scheduler>(
      new Scheduler(engine, codec, options, observer, std::move(*buffers)));
}

Scheduler::Scheduler(Engine* engine, const TextCodec* codec, const SchedulerOptions& options,
                     SchedulerObserver* observer, std::unique_ptr<HostStepBuffers> buffers)
    : engine_(engine),
      codec_(codec),
      options_(options),
      observer_(observer),
      num_slots_(engine->num_slots()),
      step_budget_(std::min(options.max_step_tokens, engine->max_step_tokens())),
      max_sequence_tokens_(engine->state_pool().max_sequence_tokens),
      buffers_(std::move(buffers)) {
  // Lowest slot first: pop_back hands out 0, 1, 2, ...
  for (int s = num_slots_ - 1; s >= 0; --s) free_slots_.push_back(s);
  group_slots_.assign(std::max(1, engine->num_slot_groups()), 0);
  for (int s = 0; s < num_slots_; ++s) ++group_slots_[engine->slot_group(s)];
  running_.reserve(num_slots_);
  ReportPool();
  ReportDeviceMemory(/*force=*/true);
  thread_ = std::thread([this] { Run(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
  }
  work_cv_.notify_all();
  thread_.join();
  const Totals t = totals();
  if (t.sampled_tokens > 0) {
    LOG_INFO << absl::StrFormat(
        "scheduler: %d steps, %d tokens sampled, %d prompt tokens; step %.3f s, engine %.3f s, "
        "server overhead %.1f us/token",
        t.steps, t.sampled_tokens, t.prompt_tokens, t.step_seconds, t.engine_seconds,
        1e6 * (t.step_seconds - t.engine_seconds) / static_cast<double>(t.sampled_tokens));
  }
}

absl::Status Scheduler::Submit(std::unique_ptr<GenerationRequest> request) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_ || shutdown_) {
      if (observer_ != nullptr) observer_->OnRejected("draining");
      return absl::UnavailableError("the server is shutting down and accepts no new requests");
    }
    const int prompt_len = static_cast<int>(request->prompt.size());
    const int64_t needed = int64_t{prompt_len} + request->stop.max_tokens;
    if (max_sequence_tokens_ > 0 && needed > max_sequence_tokens_) {
      // Waiting would not help: even an empty pool cannot hold it.
      if (observer_ != nullptr) observer_->OnRejected("pool_exhausted");
      const std::string advice =
          prompt_len < max_sequence_tokens_
              ? absl::StrFormat("max_tokens at most %d", max_sequence_tokens_ - prompt_len)
              : std::string("the prompt alone is too long for it");
      return absl::ResourceExhaustedError(absl::StrFormat(
          "prompt (%d tokens) + max_tokens (%d) needs state for %d tokens, but the state pool "
          "holds at most %d tokens for one request (state_pool_tokens); %s",
          prompt_len, request->stop.max_tokens, needed, max_sequence_tokens_, advice));
    }
    if (active_ids_.contains(ActiveKey(*request))) {
      if (observer_ != nullptr) observer_->OnRejected("duplicate_id");
      return absl::AlreadyExistsError(
          absl::StrFormat("request_id: '%s' is already queued or running", request->id));
    }
    const size_t capacity = static_cast<size_t>(options_.max_queue) + free_slots_.size();
    if (waiting_.size() >= capacity) {
      if (observer_ != nullptr) observer_->OnRejected("queue_full");
      return absl::ResourceExhaustedError(absl::StrFormat(
          "the request queue is full (%d waiting, queue_size %d, all %d slots busy); retry later",
          waiting_.size(), options_.max_queue, num_slots_));
    }
    if (options_.max_waiting_per_identity > 0 && !request->queue_share.empty()) {
      // Only requests that would wait count: one client cannot fill the queue.
      int& mine = waiting_per_share_[request->queue_share];
      if (waiting_.size() >= free_slots_.size() && mine >= options_.max_waiting_per_identity) {
        if (mine == 0) waiting_per_share_.erase(request->queue_share);
        if (observer_ != nullptr) observer_->OnRejected("queue_full");
        return absl::ResourceExhaustedError(
            absl::StrFormat("this caller already has %d requests waiting, its share of the queue "
                            "(max_waiting_per_identity %d); retry when one has started",
                            mine, options_.max_waiting_per_identity));
      }
      ++mine;
    }
    active_ids_.insert(ActiveKey(*request));
    waiting_.push_back(std::move(request));
  }
  work_cv_.notify_one();
  ReportQueue();
  return absl::OkStatus();
}

void Scheduler::DecrementWaitingLocked(const GenerationRequest& request) {
  if (options_.max_waiting_per_identity <= 0 || request.queue_share.empty()) return;
  auto it = waiting_per_share_.find(request.queue_share);
  if (it != waiting_per_share_.end() && --it->second <= 0) waiting_per_share_.erase(it);
}

void Scheduler::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  work_cv_.notify_one();
}

bool Scheduler::Abort(const std::string& owner, const std::string& request_id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string key = ActiveKey(owner, request_id);
    if (!active_ids_.contains(key)) return false;
    aborts_.insert(key);
  }
  work_cv_.notify_one();
  return true;
}

bool Scheduler::Drain(SteadyClock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  draining_ = true;
  if (idle_cv_.wait_until(lock, deadline, [&] { return active_ids_.empty(); })) return true;
  abort_all_ = true;
  work_cv_.notify_one();
  idle_cv_.wait(lock, [&] { return active_ids_.empty(); });
  return false;
}

QueueStats Scheduler::queue_stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  QueueStats q;
  q.waiting = static_cast<int>(waiting_.size());
  q.running = num_running_;
  q.slots = num_slots_;
  q.slots_in_use = num_slots_ - static_cast<int>(free_slots_.size());
  return q;
}

Scheduler::Totals Scheduler::totals() const {
  std::lock_guard<std::mutex> lock(mu_);
  return totals_;
}

void Scheduler::ReportQueue() {
  if (observer_ != nullptr) observer_->OnQueue(queue_stats());
}

void Scheduler::ReportPool() {
  if (observer_ != nullptr) observer_->OnStatePool(engine_->state_pool());
}

void Scheduler::ReportDeviceMemory(bool force) {
  if (observer_ == nullptr) return;
  const auto now = SteadyClock::now();
  if (!force && now - last_memory_report_ < std::chrono::seconds(1)) return;
  last_memory_report_ = now;
  std::vector<DeviceMemoryStats> devices = engine_->device_memory();
  if (!devices.empty()) observer_->OnDeviceMemory(devices);
}

void Scheduler::ReportRejected(const char* reason) {
  if (observer_ != nullptr) observer_->OnRejected(reason);
}

void Scheduler::Run() {
  std::vector<std::pair<std::unique_ptr<GenerationRequest>, int>> admitted;
  std::vector<std::unique_ptr<GenerationRequest>> dropped;
  absl::flat_hash_set<std::string> aborts;
  for (;;) {
    bool abort_all = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] {
        return shutdown_ || abort_all_ || !aborts_.empty() || !running_.empty() ||
               !inflight_.empty() || (!waiting_.empty() && !free_slots_.empty());
      });
      if (shutdown_ && running_.empty() && inflight_.empty() && waiting_.empty()) break;
      abort_all = abort_all_ || shutdown_;
      aborts.clear();
      aborts.swap(aborts_);
      for (auto it = waiting_.begin(); (abort_all || !aborts.empty()) && it != waiting_.end();) {
        if (abort_all || aborts.contains(ActiveKey(**it))) {
          DecrementWaitingLocked(**it);
          dropped.push_back(std::move(*it));
          it = waiting_.erase(it);
        } else {
          ++it;
        }
      }
      while (!waiting_.empty() && !free_slots_.empty()) {
        DecrementWaitingLocked(*waiting_.front());
        const size_t pick = PickFreeSlotLocked();
        admitted.emplace_back(std::move(waiting_.front()), free_slots_[pick]);
        waiting_.pop_front();
        free_slots_.erase(free_slots_.begin() + static_cast<std::ptrdiff_t>(pick));
        ++num_running_;
      }
    }
    for (auto& request : dropped) FinishUnscheduled(std::move(request), FinishReason::kAbort, "");
    dropped.clear();
    // Gauges must show an admitted request before its first token reaches the
    // client (a scrape right after the first chunk sees it running).
    const bool admitted_any = !admitted.empty();
    Admit(&admitted);
    if (admitted_any) {
      ReportQueue();
      ReportPool();
    }
    if (abort_all || !aborts.empty()) {
      for (auto& seq : running_) {
        if (abort_all || aborts.contains(ActiveKey(*seq->request))) {
          Finish(seq.get(), FinishReason::kAbort, FinishEvent{});
        }
      }
      RemoveFinished();
    }
    if (!running_.empty()) CheckBacklogs();
    if ((!running_.empty() || !inflight_.empty()) && !RunStep()) {
      // Every sequence waits for its client: sleep until a sink's backlog
      // clears (Wake), new work comes, or it is time to check for stalls.
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait_for(lock, std::chrono::milliseconds(50), [&] {
        return woken_ || shutdown_ || abort_all_ || !aborts_.empty() ||
               (!waiting_.empty() && !free_slots_.empty());
      });
      woken_ = false;
    }
    ReportQueue();
    ReportPool();
    ReportDeviceMemory(/*force=*/false);
  }
}

size_t Scheduler::PickFreeSlotLocked() {
  if (group_slots_.size() <= 1) return free_slots_.size() - 1;
  group_free_.assign(group_slots_.size(), 0);
  for (int s : free_slots_) ++group_free_[engine_->slot_group(s)];
  size_t best = 0;
  int best_running = 0;
  for (size_t i = 0; i < free_slots_.size(); ++i) {
    const int g = engine_->slot_group(free_slots_[i]);
    const int running = group_slots_[g] - group_free_[g];
    if (i == 0 || running < best_running ||
        (running == best_running && free_slots_[i] < free_slots_[best])) {
      best = i;
      best_running = running;
    }
  }
  return best;
}

void Scheduler::CheckBacklogs() {
  const auto now = SteadyClock::now();
  const auto timeout = std::chrono::duration_cast<SteadyClock::duration>(
      std::chrono::duration<double>(options_.stall_timeout_seconds));
  bool ended = false;
  for (auto& seq : running_) {
    if (!seq->prefilled() || !seq->request->sink->Backlogged()) {
      seq->paused = false;
      continue;
    }
    if (!seq->paused) {
      seq->paused = true;
      seq->paused_since = now;
      LOG_VERBOSE << "request " << seq->request->id << ": paused, its client is not reading";
      continue;
    }
    if (now - seq->paused_since >= timeout) {
      FinishEvent event;
      event.stalled = true;
      event.error_message = absl::StrFormat(
          "the client read no output for %.1f s while its stream's backlog was full "
          "(stall_timeout_seconds, max_stream_backlog_bytes)",
          options_.stall_timeout_seconds);
      Finish(seq.get(), FinishReason::kAbort, std::move(event));
      ended = true;
    }
  }
  if (ended) RemoveFinished();
}

void Scheduler::Admit(std::vector<std::pair<std::unique_ptr<GenerationRequest>, int>>* admitted) {
  for (size_t i = 0; i < admitted->size(); ++i) {
    auto& [request, slot] = (*admitted)[i];
    const int total = static_cast<int>(request->prompt.size()) + request->stop.max_tokens;
    absl::Status status = engine_->AcquireSlot(slot, total);
    if (!status.ok()) {
      if (running_.empty() && retiring_.empty()) {
        // Nothing else holds engine state: this request can never fit.
        {
          std::lock_guard<std::mutex> lock(mu_);
          free_slots_.push_back(slot);
          --num_running_;
        }
        FinishUnscheduled(std::move(request), FinishReason::kError, std::string(status.message()));
        continue;
      }
      // Retry once a running sequence has freed its state: this and the
      // later admissions go back to the head of the queue, in order.
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t j = admitted->size(); j-- > i;) {
        free_slots_.push_back((*admitted)[j].second);
        --num_running_;
        const GenerationRequest& back = *(*admitted)[j].first;
        if (options_.max_waiting_per_identity > 0 && !back.queue_share.empty()) {
          ++waiting_per_share_[back.queue_share];
        }
        waiting_.push_front(std::move((*admitted)[j].first));
      }
      break;
    }
    std::unique_ptr<DetokenizerStream> detok =
        codec_ != nullptr ? codec_->NewDetokenizer(request->skip_special_tokens) : nullptr;
    auto seq = std::make_unique<Sequence>(std::move(request), slot, std::move(detok));
    seq->tokens = seq->request->prompt;
    seq->prompt_len = static_cast<int>(seq->tokens.size());
    if (seq->request->sampling.has_penalties()) seq->history.AddPrompt(seq->tokens);
    running_.push_back(std::move(seq));
  }
  admitted->clear();
}

bool Scheduler::RunStep() {
  if (!engine_->pipelines()) {
    if (!LaunchNext(/*ahead=*/false)) return false;
    CollectOldest();
    return true;
  }
  // Run ahead: step N+1 goes out before step N's ids are on the host, when
  // every id N samples stays on the device for N+1 to read.
  bool progressed = false;
  if (!inflight_.empty() && !inflight_.back().device_only) {
    CollectOldest();
    progressed = true;
  }
  const bool launched = LaunchNext(/*ahead=*/!inflight_.empty());
  if (inflight_.size() > (launched ? 1u : 0u)) {
    CollectOldest();
    progressed = true;
  }
  return launched || progressed;
}

bool Scheduler::LaunchNext(bool ahead) {
  const auto step_start = SteadyClock::now();
  HostStepBuffers::Set& buf = buffers_->Next();
  plan_.seqs.clear();
  step_seqs_.clear();
  int n = 0;
  int budget = step_budget_;
  bool device_only = true;
  auto add_chunk = [&](Sequence* seq, int len, bool want_logits) {
    const int start = seq->num_computed;
    SeqChunk chunk{seq->slot, start, n, len, want_logits};
    if (static_cast<int>(seq->tokens.size()) > start) {
      for (int i = 0; i < len; ++i) buf.token_ids[n + i] = seq->tokens[start + i];
    } else {
      buf.token_ids[n] = 0;  // the previous step's sample, on the device
      chunk.token_from_last_sample = true;
    }
    if (want_logits) {
      const int index = seq->output.num_tokens() + seq->awaiting;
      chunk.sampling = &seq->request->sampling;
      chunk.sample_index = static_cast<uint64_t>(index);
      chunk.banned = seq->output.banned_ids_at(index);
      device_only = device_only && engine_->SamplesOnDevice(chunk);
      ++seq->awaiting;
    }
    seq->num_computed += len;
    ++seq->inflight_steps;
    plan_.seqs.push_back(chunk);
    step_seqs_.push_back(seq);
    n += len;
    budget -= len;
  };
  int decode_tokens = 0;
  for (auto& seq : running_) {
    if (!seq->prefilled() || seq->paused || seq->finished) continue;
    // Its token still on its way to the host (not running ahead), or its
    // pending sample is its last allowed one: nothing to compute yet.
    if (seq->awaiting > 0 && !ahead) continue;
    if (seq->output.num_tokens() + seq->awaiting >= seq->request->stop.max_tokens) continue;
    add_chunk(seq.get(), 1, true);
    ++decode_tokens;
  }
  for (auto& seq : running_) {
    if (budget == 0) break;
    if (seq->prefilled() || seq->finished) continue;
    if (seq->num_computed == 0) {
      seq->scheduled = step_start;
      const double queue_s = SecondsBetween(seq->request->arrival, step_start);
      if (observer_ != nullptr) observer_->OnScheduled(queue_s, seq->prompt_len);
    }
    const int len = std::min(seq->prompt_len - seq->num_computed, budget);
    add_chunk(seq.get(), len, seq->num_computed + len == seq->prompt_len);
  }
  if (n == 0) return false;
  plan_.token_ids = buf.token_ids;
  plan_.num_tokens = n;

  // A record from an earlier step keeps its vectors' capacity (the logits
  // rows of host-sampled steps are vocab floats each).
  if (spare_.empty()) spare_.emplace_back();
  inflight_.push_back(std::move(spare_.back()));
  spare_.pop_back();
  InFlight& step = inflight_.back();
  step.start = step_start;
  step.buffers = &buf;
  step.num_tokens = n;
  step.decode_tokens = decode_tokens;
  step.device_only = device_only;
  step.launched_ahead = inflight_.size() > 1;
  step.engine_start = SteadyClock::now();
  step.status =
      engine_->pipelines() ? engine_->Launch(plan_) : engine_->StepAndSample(plan_, &step.result);
  step.launch_end = SteadyClock::now();
  step.mode = engine_->last_step_mode();
  step.bucket = engine_->last_step_bucket();
  // The engine is done reading the plan: the record takes its chunks (the
  // plan gets the record's old vectors, capacity kept, for the next step).
  step.chunks.swap(plan_.seqs);
  step.seqs.swap(step_seqs_);
  return true;
}

void Scheduler::CollectOldest() {
  InFlight& step = spare_.emplace_back(std::move(inflight_.front()));
  inflight_.pop_front();
  const auto collect_start = SteadyClock::now();
  if (step.status.ok() && engine_->pipelines()) step.status = engine_->Collect(&step.result);
  const auto engine_end = SteadyClock::now();
  const StepResult& res = step.result;
  absl::Status& status = step.status;
  const std::vector<float>& logits = res.logits;
  const int vocab = engine_->info().vocab_size;
  int num_sampled = 0;
  for (const SeqChunk& c : step.chunks) num_sampled += c.want_logits ? 1 : 0;
  if (status.ok() && res.sampled && res.ids.size() != static_cast<size_t>(num_sampled)) {
    status = absl::InternalError(
        absl::StrFormat("engine sampled %d ids, expected %d", res.ids.size(), num_sampled));
  }
  if (status.ok() && !res.sampled && logits.size() != static_cast<size_t>(num_sampled) * vocab) {
    status = absl::InternalError(absl::StrFormat("engine returned %d logits, expected %d x %d",
                                                 logits.size(), num_sampled, vocab));
  }
  // A step ran ahead of this one on the ids this one sampled on the device.
  if (status.ok() && engine_->pipelines() && !res.sampled && num_sampled > 0 && step.device_only) {
    status =
        absl::InternalError("engine returned logits for rows it said it samples on the device");
  }
  if (!status.ok()) {
    LOG_ERROR << "engine step failed, ending its " << step.seqs.size() << " sequences: " << status;
  }

  // The engine is done with this step's slots: a sequence it names that
  // ends now frees its slot at once unless a later launched step names it.
  for (Sequence* seq : step.seqs) --seq->inflight_steps;
  // Sample every sequence first (ids land in the step's sampled buffer, as
  // they will from the GPU), then stream and retire. A sequence that ended
  // after this step went out (a stop in the step before, an abort) drops
  // its result: at most one token computed past its end.
  int row = 0, dropped = 0;
  for (size_t i = 0; i < step.chunks.size(); ++i) {
    Sequence* seq = step.seqs[i];
    const SeqChunk& chunk = step.chunks[i];
    if (chunk.want_logits) --seq->awaiting;
    if (seq->finished) {
      if (chunk.want_logits) ++row;
      dropped += chunk.len;
      continue;
    }
    if (!status.ok()) {
      FinishEvent event;
      event.error_message = std::string(status.message());
      Finish(seq, FinishReason::kError, std::move(event));
      continue;
    }
    if (!chunk.want_logits) continue;
    sampling::SampleResult result;
    if (res.sampled) {
      result.token_id = res.ids[row];
      if (!res.samples.empty()) result = res.samples[row];  // logprobs from the device
    } else {
      sampler_.Sample(std::span<const float>(logits.data() + static_cast<size_t>(row) * vocab,
                                             static_cast<size_t>(vocab)),
                      seq->request->sampling, &seq->history, chunk.banned, chunk.sample_index,
                      &result);
    }
    step.buffers->sampled_ids[row] = result.token_id;
    const auto now = SteadyClock::now();
    const int32_t token = step.buffers->sampled_ids[row];
    ++row;
    seq->tokens.push_back(token);
    if (seq->request->sampling.has_penalties()) seq->history.AddOutput(token);
    SequenceOutput::Step out = seq->output.Add(token);
    if (seq->output.num_tokens() == 1) {
      seq->first_token = now;
      if (observer_ != nullptr) {
        observer_->OnFirstToken(SecondsBetween(seq->request->arrival, now));
      }
    } else if (observer_ != nullptr) {
      observer_->OnNextToken(SecondsBetween(seq->last_token, now));
    }
    seq->last_token = now;
    TokenEvent event;
    event.token_id = token;
    event.text = std::move(out.text);
    if (seq->request->sampling.logprobs || seq->request->sampling.top_logprobs > 0) {
      event.logprobs = std::move(result);
    }
    seq->request->sink->OnToken(std::move(event));
    if (out.finished) {
      FinishEvent fin;
      fin.stop_string = std::move(out.stop_string);
      fin.stop_token_id = out.stop_token_id;
      Finish(seq, out.reason, std::move(fin));
    }
  }
  RemoveFinished();
  if (!status.ok()) return;

  const auto step_end = SteadyClock::now();
  StepStats stats;
  // Overlapping steps: a step's time is from when it was planned, or the
  // previous step's end when later, to the end of its results.
  stats.step_seconds = SecondsBetween(std::max(step.start, last_step_end_), step_end);
  stats.engine_seconds = SecondsBetween(step.engine_start, step.launch_end) +
                         SecondsBetween(collect_start, engine_end);
  last_step_end_ = step_end;
  stats.decode_tokens = step.decode_tokens;
  stats.prefill_tokens = step.num_tokens - step.decode_tokens;
  stats.sequences = static_cast<int>(step.chunks.size());
  stats.mode = step.mode;
  stats.bucket = step.bucket;
  stats.launched_ahead = step.launched_ahead;
  stats.dropped_tokens = dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++totals_.steps;
    totals_.step_seconds += stats.step_seconds;
    totals_.engine_seconds += stats.engine_seconds;
    totals_.sampled_tokens += static_cast<uint64_t>(num_sampled);
    totals_.prompt_tokens += static_cast<uint64_t>(stats.prefill_tokens);
  }
  if (observer_ != nullptr) observer_->OnStep(stats);
}

void Scheduler::RemoveFinished() {
  for (auto& seq : running_) {
    if (seq->finished && seq->inflight_steps > 0) retiring_.push_back(std::move(seq));
  }
  std::erase_if(running_, [](const auto& s) { return s == nullptr || s->finished; });
  for (auto& seq : retiring_) {
    if (seq->inflight_steps == 0) {
      ReleaseSlotOf(*seq);
      seq.reset();
    }
  }
  std::erase_if(retiring_, [](const auto& s) { return s == nullptr; });
}

void Scheduler::ReleaseSlotOf(const Sequence& seq) {
  engine_->ReleaseSlot(seq.slot);
  ReportPool();
  {
    std::lock_guard<std::mutex> lock(mu_);
    free_slots_.push_back(seq.slot);
    --num_running_;
  }
}

void Scheduler::Finish(Sequence* seq, FinishReason reason, FinishEvent event) {
  const auto now = SteadyClock::now();
  const GenerationRequest& r = *seq->request;
  seq->finished = true;
  event.reason = reason;
  event.prompt_tokens = seq->prompt_len;
  event.completion_tokens = seq->output.num_tokens();
  if (seq->scheduled != SteadyClock::time_point{}) {
    event.queue_seconds = SecondsBetween(r.arrival, seq->scheduled);
  } else {
    event.queue_seconds = SecondsBetween(r.arrival, now);
  }
  if (event.completion_tokens > 0) event.ttft_seconds = SecondsBetween(r.arrival, seq->first_token);
  event.total_seconds = SecondsBetween(r.arrival, now);
  // A launched step still writes the slot's state: RemoveFinished frees it
  // once every step naming it is collected.
  if (seq->inflight_steps == 0) ReleaseSlotOf(*seq);
  {
    std::lock_guard<std::mutex> lock(mu_);
    active_ids_.erase(ActiveKey(r));
  }
  idle_cv_.notify_all();
  LOG_INFO << absl::StrFormat(
      "request %s: %s, tokens in %d out %d, ttft %.1f ms, total %.1f ms%s%s", r.id,
      FinishReasonName(reason), event.prompt_tokens, event.completion_tokens,
      1e3 * event.ttft_seconds, 1e3 * event.total_seconds,
      event.error_message.empty() ? "" : ", error: ", event.error_message);
  if (observer_ != nullptr) observer_->OnFinished(event);
  // Gauges first: a client that scrapes right after its final message must
  // not see its slot still in use.
  ReportQueue();
  r.sink->OnFinish(std::move(event));
}

void Scheduler::FinishUnscheduled(std::unique_ptr<GenerationRequest> request, FinishReason reason,
                                  const std::string& error) {
  const auto now = SteadyClock::now();
  FinishEvent event;
  event.reason = reason;
  event.prompt_tokens = static_cast<int>(request->prompt.size());
  event.queue_seconds = SecondsBetween(request->arrival, now);
  event.total_seconds = event.queue_seconds;
  event.error_message = error;
  {
    std::lock_guard<std::mutex> lock(mu_);
    active_ids_.erase(ActiveKey(*request));
  }
  idle_cv_.notify_all();
  LOG_INFO << absl::StrFormat(
      "request %s: %s before it was scheduled, tokens in %d, total %.1f ms%s%s", request->id,
      FinishReasonName(reason), event.prompt_tokens, 1e3 * event.total_seconds,
      error.empty() ? "" : ", error: ", error);
  if (observer_ != nullptr) observer_->OnFinished(event);
  ReportQueue();
  request->sink->OnFinish(std::move(event));
}

}  // namespace moegraph
