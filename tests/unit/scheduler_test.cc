// server/scheduler with the FakeEngine: batching, chunked prefill within the
// step budget, cancellation, admission, stop ids, seeded determinism
// independent of the batch, and drain; each both one step at a time and with
// the engine pipelining its steps (GENERATE).
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "server/scheduler/scheduler.h"
#include "server/testing/fake_engine.h"
#include "tests/unit/scheduler_testing.h"

namespace moegraph {
namespace {

using namespace std::chrono_literals;
using namespace scheduler_testing;

TEST_CASE("scheduler: one greedy request matches the engine's argmax chain", "[scheduler]") {
  FakeEngineOptions eo;
  eo.device_sampling = eo.pipelined = GENERATE(false, true);
  FakeEngine engine(eo);
  auto scheduler = MakeScheduler(&engine);
  Req r = MakeRequest("a", Prompt(5), 12);
  REQUIRE(scheduler->Submit(std::move(r.request)).ok());
  FinishEvent fin = r.sink->WaitFinish();
  CHECK(fin.reason == FinishReason::kLength);
  CHECK(fin.prompt_tokens == 5);
  CHECK(fin.completion_tokens == 12);
  CHECK(r.sink->ids() == ExpectedGreedy(Prompt(5), 12));
}

TEST_CASE("scheduler: concurrent requests share steps and keep their own outputs", "[scheduler]") {
  FakeEngineOptions eo;
  eo.device_sampling = eo.pipelined = GENERATE(false, true);
  eo.num_slots = 4;
  eo.step_seconds = 0.002;  // so that all four are in flight together
  FakeEngine engine(eo);
  auto scheduler = MakeScheduler(&engine);
  std::vector<Req> reqs;
  for (int i = 0; i < 4; ++i)
    reqs.push_back(MakeRequest("r" + std::to_string(i), Prompt(3 + i, 20 * i), 10));
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (auto& r : reqs) {
    sinks.push_back(r.sink);
    REQUIRE(scheduler->Submit(std::move(r.request)).ok());
  }
  for (int i = 0; i < 4; ++i) {
    sinks[i]->WaitFinish();
    CHECK(sinks[i]->ids() == ExpectedGreedy(Prompt(3 + i, 20 * i), 10));
  }
  size_t widest = 0;
  for (const auto& step : engine.steps()) widest = std::max(widest, step.seqs.size());
  CHECK(widest >= 2);
  CHECK(engine.acquired_slots() == 0);
}

TEST_CASE("scheduler: new requests go to the slot group running the fewest", "[scheduler][ep]") {
  // Two groups (as two expert-parallel ranks): slots 0, 2 and 1, 3.
  FakeEngineOptions eo;
  eo.device_sampling = eo.pipelined = GENERATE(false, true);
  eo.num_slots = 4;
  eo.slot_groups = 2;
  eo.step_seconds = 0.001;
  FakeEngine engine(eo);
  auto scheduler = MakeScheduler(&engine);
  // a -> 0, b -> 1, c -> 2 (group 0); b ends, then a (freeing slot 0 last:
  // a last-freed-first choice would take it), c runs on.
  Req a = MakeRequest("a", Prompt(3), 3), b = MakeRequest("b", Prompt(4), 1);
  Req c = MakeRequest("c", Prompt(5), 1000);
  for (Req* r : {&a, &b, &c}) REQUIRE(scheduler->Submit(std::move(r->request)).ok());
  a.sink->WaitFinish();
  b.sink->WaitFinish();
  c.sink->WaitTokens(2);
  // Group 0 runs c, group 1 nothing: d goes to group 1 (its lowest slot, 1).
  Req d = MakeRequest("d", Prompt(6), 1000);
  REQUIRE(scheduler->Submit(std::move(d.request)).ok());
  d.sink->WaitTokens(1);
  std::map<int, int> slot_of_prompt;  // prompt length -> slot of its first chunk
  for (const auto& step : engine.steps()) {
    for (const SeqChunk& ch : step.seqs) {
      if (ch.start_pos == 0) slot_of_prompt.emplace(ch.len, ch.slot);
    }
  }
  CHECK(slot_of_prompt[3] == 0);
  CHECK(slot_of_prompt[4] == 1);
  CHECK(slot_of_prompt[5] == 2);
  CHECK(slot_of_prompt[6] == 1);
  CHECK(scheduler->Abort("c"));
  CHECK(scheduler->Abort("d"));
  c.sink->WaitFinish();
  d.sink->WaitFinish();
}

TEST_CASE("scheduler: prefill is chunked within the step budget and decodes keep going",
          "[scheduler]") {
  FakeEngineOptions eo;
  eo.device_sampling = eo.pipelined = GENERATE(false, true);
  eo.num_slots = 2;
  eo.max_step_tokens = 8;
  eo.step_seconds = 0.001;
  FakeEngine engine(eo);
  auto scheduler = MakeScheduler(&engine, 16, 8);
  Req decoding = MakeRequest("decoding", Prompt(2), 40);
  auto decoding_sink = decoding.sink;
  REQUIRE(scheduler->Submit(std::move(decoding.request)).ok());
  decoding_sink->WaitTokens(2);
  Req long_prompt = MakeRequest("long", Prompt(30, 100), 3);
  auto long_sink = long_prompt.sink;
  REQUIRE(scheduler->Submit(std::move(long_prompt.request)).ok());
  long_sink->WaitFinish();
  decoding_sink->WaitFinish();
  CHECK(long_sink->ids() == ExpectedGreedy(Prompt(30, 100), 3));
  CHECK(decoding_sink->ids() == ExpectedGreedy(Prompt(2), 40));

  // Every step fits the budget; while the long prompt was prefilling, each
  // step also carried the running decode.
  int prefill_steps = 0;
  for (const auto& step : engine.steps()) {
    CHECK(step.num_tokens <= 8);
    bool has_prefill = false, has_decode = false;
    for (const SeqChunk& c : step.seqs) {
      if (c.len > 1 || (c.len == 1 && !c.want_logits)) has_prefill = true;
      if (c.len == 1 && c.want_logits && c.start_pos >= 2 && c.slot == 0) has_decode = true;
    }
    if (has_prefill && step.seqs.size() == 2) {
      ++prefill_steps;
      CHECK(has_decode);
    }
  }
  CHECK(prefill_steps >= 4);  // 30 tokens in chunks of at most 7
}

TEST_CASE("scheduler: abort frees the slot for the next request", "[scheduler]") {
  FakeEngineOptions eo;
  eo.device_sampling = eo.pipelined = GENERATE(false, true);
  eo.num_slots = 1;
  eo.step_seconds = 0.002;
  FakeEngine engine(eo);
  auto scheduler = MakeScheduler(&engine);
  Req first = MakeRequest("first", Prompt(4), 1000);
  Req second = MakeRequest("second", Prompt(4, 50), 5);
  auto first_sink = first.sink, second_sink = second.sink;
  REQUIRE(scheduler->Submit(std::move(first.request)).ok());
  REQUIRE(scheduler->Submit(std::move(second.request)).ok());
  first_sink->WaitTokens(3);
  CHECK_FALSE(second_sink->finished());
  CHECK(scheduler->Abort("first"));
  FinishEvent fin = first_sink->WaitFinish();
  CHECK(fin.reason == FinishReason::kAbort);
  CHECK(fin.completion_tokens < 1000);
  CHECK(second_sink->WaitFinish().reason == FinishReason::kLength);
  CHECK(second_sink->ids() == ExpectedGreedy(Prompt(4, 50), 5));
  CHECK_FALSE(scheduler->Abort("first"));
  CHECK(engine.acquired_slots() == 0);
}

TEST_CASE("scheduler: a queued request can be aborted before it runs", "[scheduler]") {
  FakeEngineOptions eo;
  eo.device_sampling = eo.pipelined = GENERATE(false, true);
  eo.num_slots = 1;
  eo.step_seconds = 0.002;
  FakeEngine engine(eo);
  auto scheduler = MakeScheduler(&engine);
  Req first = MakeRequest("first", Prompt(4), 50);
  Req queued = MakeRequest("queued", Prompt(4), 5);
  auto first_sink = first.sink, queued_sink = queued.sink;
  REQUIRE(scheduler->Submit(std::move(first.request)).ok());
  REQUIRE(scheduler->Submit(std::move(queued.request)).ok());
  CHECK(scheduler->Abort("queued"));
  FinishEvent fin = queued_sink->WaitFinish();
  CHECK(fin.reason == FinishReason::kAbort);
  CHECK(fin.completion_tokens == 0);
  CHECK(first_sink->WaitFinish().reason == FinishReason::kLength);
}

TEST_CASE("scheduler: admission refuses a full queue and duplicate ids", "[scheduler]") {
  FakeEngineOptions eo;
  eo.device_sampling = eo.pipelined = GENERATE(false, true);
  eo.num_slots = 1;
  eo.step_seconds = 0.005;
  FakeEngine engine(eo);
  auto scheduler = MakeScheduler(&engine, /*max_queue=*/1);
  Req running = MakeRequest("running", Prompt(4), 200);
  auto running_sink = running.sink;
  REQUIRE(scheduler->Submit(std::move(running.request)).ok());
  running_sink->WaitTokens(1);
  Req waiting = MakeRequest("waiting", Prompt(4), 2);
  REQUIRE(scheduler->Submit(std::move(waiting.request)).ok());
  Req duplicate = MakeRequest("waiting", Prompt(4), 2);
  CHECK(absl::IsAlreadyExists(scheduler->Submit(std::move(duplicate.request))));
  Req refused = MakeRequest("refused", Prompt(4), 2);
  absl::Status status = scheduler->Submit(std::move(refused.request));
  CHECK(absl::IsResourceExhausted(status));
  CHECK(status.message().find("queue") != std::string_view::npos);
  QueueStats q = scheduler->queue_stats();
  CHECK(q.running == 1);
  CHECK(q.waiting == 1);
  CHECK(q.slots_in_use == 1);
  scheduler->Abort("running");
}

TEST_CASE("scheduler: stop token ids end the request with their id", "[scheduler]") {
  FakeEngine engine(FakeEngineOptions{});
  auto scheduler = MakeScheduler(&engine);
  std::vector<int32_t> expected = ExpectedGreedy(Prompt(6), 10);
  Req r = MakeRequest("s", Prompt(6), 10);
  r.request->stop.stop_token_ids = {expected[3]};
  REQUIRE(scheduler->Submit(std::move(r.request)).ok());
  FinishEvent fin = r.sink->WaitFinish();
  CHECK(fin.reason == FinishReason::kStop);
  REQUIRE(fin.stop_token_id.has_value());
  CHECK(*fin.stop_token_id == expected[3]);
  const size_t first_stop =
      std::find(expected.begin(), expected.end(), expected[3]) - expected.begin();
  CHECK(r.sink->ids() == std::vector<int32_t>(expected.begin(), expected.begin() + first_stop + 1));
}

TEST_CASE("scheduler: seeded sampling does not depend on the batch", "[scheduler]") {
  auto run = [](int companions) {
    FakeEngineOptions eo;
    eo.device_sampling = eo.pipelined = GENERATE(false, true);
    eo.num_slots = 4;
    FakeEngine engine(eo);
    auto scheduler = MakeScheduler(&engine);
    std::vector<std::shared_ptr<RecordingSink>> others;
    for (int i = 0; i < companions; ++i) {
      Req o = MakeRequest("o" + std::to_string(i), Prompt(5 + i, 7 * i), 20);
      o.request->sampling.temperature = 0.8f;
      o.request->sampling.seed = 1000 + i;
      others.push_back(o.sink);
      REQUIRE(scheduler->Submit(std::move(o.request)).ok());
    }
    Req r = MakeRequest("seeded", Prompt(9), 20);
    r.request->sampling.temperature = 1.0f;
    r.request->sampling.top_p = 0.9f;
    r.request->sampling.seed = 7;
    auto sink = r.sink;
    REQUIRE(scheduler->Submit(std::move(r.request)).ok());
    sink->WaitFinish();
    for (auto& o : others) o->WaitFinish();
    return sink->ids();
  };
  std::vector<int32_t> alone = run(0);
  CHECK(alone.size() == 20);
  CHECK(run(3) == alone);
  CHECK(alone != ExpectedGreedy(Prompt(9), 20));
}

TEST_CASE("scheduler: a request waits for state the pool cannot hold yet", "[scheduler]") {
  FakeEngineOptions eo;
  eo.device_sampling = eo.pipelined = GENERATE(false, true);
  eo.num_slots = 2;
  eo.state_pool_tokens = 40;
  FakeEngine engine(eo);
  auto scheduler = MakeScheduler(&engine);
  Req a = MakeRequest("a", Prompt(10), 20);  // 30 tokens
  Req b = MakeRequest("b", Prompt(10), 20);  // does not fit beside a
  auto a_sink = a.sink, b_sink = b.sink;
  REQUIRE(scheduler->Submit(std::move(a.request)).ok());
  REQUIRE(scheduler->Submit(std::move(b.request)).ok());
  CHECK(a_sink->WaitFinish().reason == FinishReason::kLength);
  CHECK(b_sink->WaitFinish().reason == FinishReason::kLength);
  CHECK(b_sink->ids() == ExpectedGreedy(Prompt(10), 20));
}

// Records the observer calls the admission and pool tests look at.
class RecordingObserver final : public SchedulerObserver {
 public:
  void OnRejected(const char* reason) override {
    std::lock_guard<std::mutex> lock(mu_);
    rejected_.push_back(reason);
  }
  void OnStatePool(const StatePoolStats& stats) override {
    std::lock_guard<std::mutex> lock(mu_);
    pools_.push_back(stats);
  }
  void OnStep(const StepStats& stats) override {
    std::lock_guard<std::mutex> lock(mu_);
    steps_.push_back(stats);
  }
  void OnDeviceMemory(const std::vector<DeviceMemoryStats>& devices) override {
    std::lock_guard<std::mutex> lock(mu_);
    memory_reports_.push_back(devices);
  }
  std::vector<std::vector<DeviceMemoryStats>> memory_reports() {
    std::lock_guard<std::mutex> lock(mu_);
    return memory_reports_;
  }
  std::vector<std::string> rejected() {
    std::lock_guard<std::mutex> lock(mu_);
    return rejected_;
  }
  std::vector<StatePoolStats> pools() {
    std::lock_guard<std::mutex> lock(mu_);
    return pools_;
  }
  std::vector<StepStats> steps() {
    std::lock_guard<std::mutex> lock(mu_);
    return steps_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> rejected_;
  std::vector<StatePoolStats> pools_;
  std::vector<StepStats> steps_;
  std::vector<std::vector<DeviceMemoryStats>> memory_reports_;
};

TEST_CASE("scheduler: admission refuses a request the state pool can never hold", "[scheduler]") {
  FakeEngineOptions eo;
  eo.device_sampling = eo.pipelined = GENERATE(false, true);
  eo.num_slots = 2;
  eo.state_pool_tokens = 40;
  FakeEngine engine(eo);
  RecordingObserver observer;
  SchedulerOptions options;
  options.max_step_tokens = 64;
  auto scheduler = Scheduler::Create(&engine, nullptr, options, &observer);
  REQUIRE(scheduler.ok());
  CHECK((*scheduler)->max_sequence_tokens() == 40);

  Req huge = MakeRequest("huge", Prompt(10), 31);  // 41 tokens: one more than the pool
  absl::Status refused = (*scheduler)->Submit(std::move(huge.request));
  CHECK(refused.code() == absl::StatusCode::kResourceExhausted);
  CHECK(std::string(refused.message()) ==
        "prompt (10 tokens) + max_tokens (31) needs state for 41 tokens, but the state pool "
        "holds at most 40 tokens for one request (state_pool_tokens); max_tokens at most 30");
  Req long_prompt = MakeRequest("long-prompt", Prompt(40), 1);
  absl::Status refused_prompt = (*scheduler)->Submit(std::move(long_prompt.request));
  CHECK(refused_prompt.code() == absl::StatusCode::kResourceExhausted);
  CHECK(std::string(refused_prompt.message()).find("the prompt alone is too long for it") !=
        std::string::npos);
  CHECK(observer.rejected() == std::vector<std::string>{"pool_exhausted", "pool_exhausted"});
  CHECK_FALSE(huge.sink->finished());

  // Exactly the limit is admitted and runs to its length.
  Req fits = MakeRequest("fits", Prompt(10), 30);
  auto fits_sink = fits.sink;
  REQUIRE((*scheduler)->Submit(std::move(fits.request)).ok());
  CHECK(fits_sink->WaitFinish().reason == FinishReason::kLength);
  CHECK(fits_sink->ids().size() == 30);
  (*scheduler)->ReportRejected("too_long");
  CHECK(observer.rejected() ==
        std::vector<std::string>{"pool_exhausted", "pool_exhausted", "too_long"});
  scheduler->reset();  // joins: every report is in

  // The pool as the observer saw it: empty at start, the 40 tokens reserved
  // while the request ran, its tokens used, and empty again at the end.
  const std::vector<StatePoolStats> pools = observer.pools();
  REQUIRE(pools.size() >= 3);
  CHECK(pools.front().capacity_tokens == 40);
  CHECK(pools.front().reserved_tokens == 0);
  CHECK(pools.front().max_sequence_tokens == 40);
  int64_t most_reserved = 0, most_used = 0;
  for (const StatePoolStats& p : pools) {
    most_reserved = std::max(most_reserved, p.reserved_tokens);
    most_used = std::max(most_used, p.used_tokens);
  }
  CHECK(most_reserved == 40);
  // After step 29: the prompt and 28 generated tokens run (step 30 ends the
  // request and releases its slot before the next report). Pipelined, step
  // 30 (the 29th token) is already launched when step 29's report is made.
  CHECK(most_used == (eo.pipelined ? 39 : 38));
  CHECK(pools.back().reserved_tokens == 0);
  CHECK(pools.back().used_tokens == 0);

  // Steps say eager with no graph bucket; the scheduler leaves those for the
  // graph work to fill.
  const std::vector<StepStats> steps = observer.steps();
  REQUIRE(steps.size() == 30);
  CHECK(steps.front().prefill_tokens == 10);
  CHECK(steps.back().decode_tokens == 1);
  for (const StepStats& st : steps) {
    CHECK(st.mode == "eager");
    CHECK(st.bucket == 0);
    CHECK(st.sequences == 1);
  }
}

TEST_CASE("scheduler: device memory is reported at start and at most once a second",
          "[scheduler]") {
  FakeEngineOptions eo;
  eo.device_sampling = eo.pipelined = GENERATE(false, true);
  eo.step_seconds = 0.25;
  eo.device_memory = {{"cuda:0", 100, 1000}, {"cuda:1", 200, 1000}};
  FakeEngine engine(eo);
  RecordingObserver observer;
  const auto start = SteadyClock::now();
  auto scheduler = Scheduler::Create(&engine, nullptr, SchedulerOptions{}, &observer);
  REQUIRE(scheduler.ok());
  // Before any request: the engine's devices as it reports them.
  const std::vector<std::vector<DeviceMemoryStats>> first = observer.memory_reports();
  REQUIRE(first.size() == 1);
  REQUIRE(first[0].size() == 2);
  CHECK(first[0][1].device == "cuda:1");
  CHECK(first[0][1].used_bytes == 200);
  CHECK(first[0][1].total_bytes == 1000);

  // 8 steps of 0.25 s: a report a second at most, not one a step.
  Req r = MakeRequest("r", Prompt(4), 7);
  auto sink = r.sink;
  REQUIRE((*scheduler)->Submit(std::move(r.request)).ok());
  CHECK(sink->WaitFinish().reason == FinishReason::kLength);
  scheduler->reset();
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  const size_t reports = observer.memory_reports().size();
  INFO("reports " << reports << " in " << seconds << " s");
  CHECK(reports >= 2);
  CHECK(reports <= 1 + static_cast<size_t>(seconds));
  CHECK(observer.steps().size() == 7);

  // An engine without devices (the CPU) reports nothing.
  FakeEngine cpu(FakeEngineOptions{});
  RecordingObserver quiet;
  auto on_cpu = Scheduler::Create(&cpu, nullptr, SchedulerOptions{}, &quiet);
  REQUIRE(on_cpu.ok());
  on_cpu->reset();
  CHECK(quiet.memory_reports().empty());
}

TEST_CASE("scheduler: drain finishes running requests, then aborts at the deadline",
          "[scheduler]") {
  FakeEngineOptions eo;
  eo.device_sampling = eo.pipelined = GENERATE(false, true);
  eo.num_slots = 2;
  eo.step_seconds = 0.002;
  FakeEngine engine(eo);
  auto scheduler = MakeScheduler(&engine);
  Req quick = MakeRequest("quick", Prompt(3), 5);
  Req slow = MakeRequest("slow", Prompt(3), 4000);
  auto quick_sink = quick.sink, slow_sink = slow.sink;
  REQUIRE(scheduler->Submit(std::move(quick.request)).ok());
  REQUIRE(scheduler->Submit(std::move(slow.request)).ok());
  slow_sink->WaitTokens(1);
  const auto start = SteadyClock::now();
  CHECK_FALSE(scheduler->Drain(start + 200ms));
  CHECK(SteadyClock::now() - start < 2s);
  CHECK(quick_sink->WaitFinish().reason == FinishReason::kLength);
  CHECK(slow_sink->WaitFinish().reason == FinishReason::kAbort);
  Req late = MakeRequest("late", Prompt(3), 5);
  CHECK(absl::IsUnavailable(scheduler->Submit(std::move(late.request))));
}

TEST_CASE("scheduler: destruction aborts what is left", "[scheduler]") {
  FakeEngineOptions eo;
  eo.device_sampling = eo.pipelined = GENERATE(false, true);
  eo.num_slots = 1;
  eo.step_seconds = 0.001;
  FakeEngine engine(eo);
  auto scheduler = MakeScheduler(&engine);
  Req a = MakeRequest("a", Prompt(3), 3000);
  Req b = MakeRequest("b", Prompt(3), 5);
  auto a_sink = a.sink, b_sink = b.sink;
  REQUIRE(scheduler->Submit(std::move(a.request)).ok());
  REQUIRE(scheduler->Submit(std::move(b.request)).ok());
  a_sink->WaitTokens(1);
  scheduler.reset();
  CHECK(a_sink->WaitFinish().reason == FinishReason::kAbort);
  CHECK(b_sink->WaitFinish().reason == FinishReason::kAbort);
}

// A sink whose client "reads" only when told: Backlogged() as the service's
// stream says it once too much output waits.
class BackloggedSink final : public GenerationSink {
 public:
  void OnToken(TokenEvent) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++tokens_;
    cv_.notify_all();
  }
  void OnFinish(FinishEvent event) override {
    std::lock_guard<std::mutex> lock(mu_);
    finish_ = event;
    cv_.notify_all();
  }
  bool Backlogged() const override { return backlogged_.load(); }
  void SetBacklogged(bool b) { backlogged_ = b; }
  int tokens() {
    std::lock_guard<std::mutex> lock(mu_);
    return tokens_;
  }
  std::optional<FinishEvent> WaitFinish(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return finish_.has_value(); });
    return finish_;
  }
  void WaitTokens(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    REQUIRE(cv_.wait_for(lock, 10s, [&] { return tokens_ >= n; }));
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int tokens_ = 0;
  std::optional<FinishEvent> finish_;
  std::atomic<bool> backlogged_{false};
};

// A 1000-token request whose sink the test backlogs at will.
std::shared_ptr<BackloggedSink> SubmitLong(Scheduler& scheduler, const std::string& id) {
  auto request = std::make_unique<GenerationRequest>();
  request->id = id;
  request->prompt = Prompt(4);
  request->stop.max_tokens = 1000;
  auto sink = std::make_shared<BackloggedSink>();
  request->sink = sink;
  REQUIRE(scheduler.Submit(std::move(request)).ok());
  return sink;
}

TEST_CASE("scheduler: a backlogged sink pauses its sequence, which resumes on Wake",
          "[scheduler]") {
  FakeEngineOptions eo;
  eo.device_sampling = eo.pipelined = GENERATE(false, true);
  eo.num_slots = 2;
  eo.step_seconds = 0.001;
  FakeEngine engine(eo);
  SchedulerOptions options;
  options.stall_timeout_seconds = 60;
  auto created = Scheduler::Create(&engine, nullptr, options, nullptr);
  REQUIRE(created.ok());
  Scheduler& scheduler = **created;
  auto sink = SubmitLong(scheduler, "slow");
  sink->WaitTokens(3);
  sink->SetBacklogged(true);
  std::this_thread::sleep_for(50ms);  // a step in flight may still land
  const int paused_at = sink->tokens();
  std::this_thread::sleep_for(300ms);
  CHECK(sink->tokens() == paused_at);  // no tokens while paused
  QueueStats q = scheduler.queue_stats();
  CHECK(q.running == 1);
  CHECK(q.slots_in_use == 1);  // the slot is kept
  // Another request runs meanwhile.
  Req other = MakeRequest("other", Prompt(3), 5);
  REQUIRE(scheduler.Submit(std::move(other.request)).ok());
  CHECK(other.sink->WaitFinish().completion_tokens == 5);
  sink->SetBacklogged(false);
  scheduler.Wake();
  sink->WaitTokens(paused_at + 5);
  CHECK(scheduler.Abort("slow"));
  std::optional<FinishEvent> fin = sink->WaitFinish(10s);
  REQUIRE(fin.has_value());
  CHECK_FALSE(fin->stalled);
}

TEST_CASE("scheduler: a sequence stalled past the timeout ends, naming the limits", "[scheduler]") {
  FakeEngineOptions eo;
  eo.device_sampling = eo.pipelined = GENERATE(false, true);
  // Steps of 2 ms: the 1000 tokens take 2 s, so the sink is backlogged long
  // before they could all be generated (without a step time they were, in
  // 4.6 ms on a loaded CI machine, and the request finished by length).
  eo.step_seconds = 0.002;
  FakeEngine engine(eo);
  SchedulerOptions options;
  options.stall_timeout_seconds = 0.2;
  auto created = Scheduler::Create(&engine, nullptr, options, nullptr);
  REQUIRE(created.ok());
  Scheduler& scheduler = **created;
  auto sink = SubmitLong(scheduler, "frozen");
  sink->WaitTokens(2);
  sink->SetBacklogged(true);
  const auto t0 = std::chrono::steady_clock::now();
  std::optional<FinishEvent> fin = sink->WaitFinish(5s);
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE(fin.has_value());
  CHECK(fin->stalled);
  CHECK(fin->reason == FinishReason::kAbort);
  CHECK(fin->error_message.find("stall_timeout_seconds") != std::string::npos);
  CHECK(waited >= 0.15);
  CHECK(waited < 2.0);
  CHECK(scheduler.queue_stats().slots_in_use == 0);
}

TEST_CASE("scheduler: one caller gets at most its share of the queue", "[scheduler]") {
  FakeEngineOptions eo;
  eo.device_sampling = eo.pipelined = GENERATE(false, true);
  eo.num_slots = 1;
  eo.step_seconds = 0.005;
  FakeEngine engine(eo);
  SchedulerOptions options;
  options.max_queue = 10;
  options.max_waiting_per_identity = 2;
  auto created = Scheduler::Create(&engine, nullptr, options, nullptr);
  REQUIRE(created.ok());
  Scheduler& scheduler = **created;
  auto submit = [&](const std::string& id, const std::string& share, Req* out) {
    *out = MakeRequest(id, Prompt(4), 200);
    out->request->queue_share = share;
    return scheduler.Submit(std::move(out->request));
  };
  Req running, a1, a2, a3, b1;
  REQUIRE(submit("running", "ipv4:10.0.0.1", &running).ok());
  running.sink->WaitTokens(1);
  CHECK(submit("a1", "ipv4:10.0.0.1", &a1).ok());
  CHECK(submit("a2", "ipv4:10.0.0.1", &a2).ok());
  absl::Status third = submit("a3", "ipv4:10.0.0.1", &a3);
  CHECK(absl::IsResourceExhausted(third));
  CHECK(third.message() ==
        "this caller already has 2 requests waiting, its share of the queue "
        "(max_waiting_per_identity 2); retry when one has started");
  CHECK(submit("b1", "key:bob", &b1).ok());  // another caller still gets in
  // A waiting request that leaves gives its place back.
  CHECK(scheduler.Abort("a1"));
  CHECK(a1.sink->WaitFinish().reason == FinishReason::kAbort);
  Req a4;
  CHECK(submit("a4", "ipv4:10.0.0.1", &a4).ok());
  for (const char* id : {"running", "a2", "a4", "b1"}) scheduler.Abort(id);
}

TEST_CASE("scheduler: ids are per owner; Abort reaches only the owner's", "[scheduler]") {
  FakeEngineOptions eo;
  eo.device_sampling = eo.pipelined = GENERATE(false, true);
  eo.num_slots = 2;
  eo.step_seconds = 0.002;
  FakeEngine engine(eo);
  auto scheduler = MakeScheduler(&engine);
  Req alice = MakeRequest("job", Prompt(4), 1000);
  alice.request->owner = "key:alice";
  auto alice_sink = alice.sink;
  REQUIRE(scheduler->Submit(std::move(alice.request)).ok());
  Req bob = MakeRequest("job", Prompt(4), 3);  // the same id, another owner
  bob.request->owner = "key:bob";
  auto bob_sink = bob.sink;
  REQUIRE(scheduler->Submit(std::move(bob.request)).ok());
  CHECK(bob_sink->WaitFinish().reason == FinishReason::kLength);
  CHECK_FALSE(scheduler->Abort("key:bob", "job"));  // bob's has ended; alice's is not his
  CHECK_FALSE(scheduler->Abort("", "job"));
  CHECK_FALSE(alice_sink->finished());
  Req again = MakeRequest("job", Prompt(4), 3);
  again.request->owner = "key:alice";
  CHECK(absl::IsAlreadyExists(scheduler->Submit(std::move(again.request))));
  CHECK(scheduler->Abort("key:alice", "job"));
  CHECK(alice_sink->WaitFinish().reason == FinishReason::kAbort);
}

}  // namespace
}  // namespace moegraph
