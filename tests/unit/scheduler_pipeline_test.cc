// The scheduler over an engine that pipelines steps (the FakeEngine modelling
// a GPU: device sampling, Launch/Collect): the same outputs as one step at a
// time, step N+1 launched before step N's ids reach the host, at most one
// token computed past a stop, slots freed only once no launched step names
// them, and host sampling (penalties) falling back to one step at a time.
#include <catch2/catch.hpp>

#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "server/scheduler/scheduler.h"
#include "server/testing/fake_engine.h"
#include "tests/unit/scheduler_testing.h"

namespace moegraph {
namespace {

using namespace scheduler_testing;

struct Outcome {
  std::vector<int32_t> ids;
  FinishReason reason = FinishReason::kError;
  int completion_tokens = 0;
  bool operator==(const Outcome&) const = default;
};

// A mixed load: more requests than slots (they join as others leave), long
// prompts (chunked prefill), greedy, seeded sampling, stop ids, min_tokens,
// logprobs, and penalties (sampled on the host).
std::map<std::string, Outcome> RunMixedLoad(const FakeEngineOptions& eo,
                                            FakeEngine** engine_out = nullptr) {
  static std::unique_ptr<FakeEngine> engine;
  engine = std::make_unique<FakeEngine>(eo);
  if (engine_out != nullptr) *engine_out = engine.get();
  auto scheduler = MakeScheduler(engine.get(), 32, 48);
  std::map<std::string, std::shared_ptr<RecordingSink>> sinks;
  for (int i = 0; i < 12; ++i) {
    const std::string id = "r" + std::to_string(i);
    Req r = MakeRequest(id, Prompt(3 + 17 * (i % 4), 5 * i), 6 + 5 * (i % 5));
    sampling::SamplingParams& sp = r.request->sampling;
    if (i % 3 == 1) {
      sp.temperature = 0.9f;
      sp.top_p = 0.95f;
      sp.seed = 100 + i;
    }
    if (i % 4 == 2) sp.logprobs = true;
    if (i == 5) sp.repetition_penalty = 1.3f;
    if (i == 7) r.request->stop.min_tokens = 4;
    if (i == 9) {
      // Stops at its third greedy token.
      r.request->stop.stop_token_ids = {ExpectedGreedy(r.request->prompt, 3)[2]};
    }
    sinks[id] = r.sink;
    REQUIRE(scheduler->Submit(std::move(r.request)).ok());
  }
  std::map<std::string, Outcome> out;
  for (auto& [id, sink] : sinks) {
    const FinishEvent fin = sink->WaitFinish();
    out[id] = Outcome{sink->ids(), fin.reason, fin.completion_tokens};
  }
  return out;
}

// Sums what the scheduler reports of its steps.
struct StepCounter final : SchedulerObserver {
  void OnStep(const StepStats& s) override {
    std::lock_guard<std::mutex> lock(mu);
    ahead += s.launched_ahead ? 1 : 0;
    dropped += s.dropped_tokens;
  }
  std::mutex mu;
  int ahead = 0, dropped = 0;
};

FakeEngineOptions Options(bool device_sampling, bool pipelined) {
  FakeEngineOptions eo;
  eo.num_slots = 4;
  eo.max_step_tokens = 48;
  eo.device_sampling = device_sampling;
  eo.pipelined = pipelined;
  eo.step_seconds = pipelined ? 0.0005 : 0;
  return eo;
}

TEST_CASE("pipelined scheduler: the same outputs as one step at a time", "[scheduler]") {
  const auto host = RunMixedLoad(Options(false, false));
  REQUIRE(host.size() == 12);
  CHECK(host.at("r9").reason == FinishReason::kStop);
  CHECK(host.at("r9").completion_tokens == 3);
  CHECK(host.at("r0").ids == ExpectedGreedy(Prompt(3, 0), 6));
  CHECK(RunMixedLoad(Options(true, false)) == host);
  FakeEngine* engine = nullptr;
  CHECK(RunMixedLoad(Options(true, true), &engine) == host);
  // Some steps really ran ahead: decode tokens taken from the last step's
  // samples on the "device".
  int ahead = 0;
  for (const auto& step : engine->steps())
    for (const SeqChunk& c : step.seqs) ahead += c.token_from_last_sample ? 1 : 0;
  CHECK(ahead > 20);
  CHECK(engine->launches_ahead() > 10);
  CHECK(engine->releases_in_flight() == 0);
}

TEST_CASE("pipelined scheduler: a stop costs at most one token past it, a length limit none",
          "[scheduler]") {
  FakeEngineOptions eo = Options(true, true);
  eo.num_slots = 1;
  FakeEngine engine(eo);
  StepCounter counter;
  auto made = Scheduler::Create(&engine, nullptr, SchedulerOptions{}, &counter);
  REQUIRE(made.ok());
  auto scheduler = std::move(*made);
  const std::vector<int32_t> greedy = ExpectedGreedy(Prompt(4), 10);
  Req stop = MakeRequest("stop", Prompt(4), 10);
  stop.request->stop.stop_token_ids = {greedy[5]};
  Req length = MakeRequest("length", Prompt(4), 7);
  auto stop_sink = stop.sink, length_sink = length.sink;
  REQUIRE(scheduler->Submit(std::move(stop.request)).ok());
  REQUIRE(scheduler->Submit(std::move(length.request)).ok());
  CHECK(stop_sink->WaitFinish().reason == FinishReason::kStop);
  CHECK(stop_sink->ids() == std::vector<int32_t>(greedy.begin(), greedy.begin() + 6));
  CHECK(length_sink->WaitFinish().reason == FinishReason::kLength);
  CHECK(length_sink->ids() == ExpectedGreedy(Prompt(4), 7));
  // One slot: the steps of "stop" come first, then those of "length" (the
  // slot is handed over only once no launched step names it).
  int fed_stop = 0, fed_length = 0;
  bool second = false;
  for (const auto& step : engine.steps()) {
    for (const SeqChunk& c : step.seqs) {
      if (c.start_pos == 0) second = fed_stop > 0;
      (second ? fed_length : fed_stop) += c.len;
    }
  }
  // 4 prompt tokens and 6 outputs: the 6th (the stop) fed once more.
  CHECK(fed_stop == 4 + 6);
  // 4 prompt tokens and 7 outputs, the last never fed.
  CHECK(fed_length == 4 + 6);
  CHECK(engine.releases_in_flight() == 0);
  scheduler.reset();
  CHECK(counter.dropped == 1);
  CHECK(counter.ahead == engine.launches_ahead());
  CHECK(counter.ahead >= 8);
}

TEST_CASE("pipelined scheduler: an abort in flight frees the slot after the step is collected",
          "[scheduler]") {
  FakeEngineOptions eo = Options(true, true);
  eo.num_slots = 1;
  eo.step_seconds = 0.002;
  FakeEngine engine(eo);
  auto scheduler = MakeScheduler(&engine);
  Req a = MakeRequest("a", Prompt(3), 3000);
  Req b = MakeRequest("b", Prompt(5), 8);
  auto a_sink = a.sink, b_sink = b.sink;
  REQUIRE(scheduler->Submit(std::move(a.request)).ok());
  REQUIRE(scheduler->Submit(std::move(b.request)).ok());
  a_sink->WaitTokens(5);
  CHECK(scheduler->Abort("a"));
  CHECK(a_sink->WaitFinish().reason == FinishReason::kAbort);
  CHECK(b_sink->WaitFinish().reason == FinishReason::kLength);
  CHECK(b_sink->ids() == ExpectedGreedy(Prompt(5), 8));
  scheduler.reset();
  CHECK(engine.acquired_slots() == 0);
  CHECK(engine.releases_in_flight() == 0);
}

TEST_CASE("pipelined scheduler: destruction with steps in flight aborts and frees every slot",
          "[scheduler]") {
  FakeEngineOptions eo = Options(true, true);
  eo.step_seconds = 0.001;
  FakeEngine engine(eo);
  auto scheduler = MakeScheduler(&engine);
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (int i = 0; i < 6; ++i) {
    Req r = MakeRequest("x" + std::to_string(i), Prompt(3 + i), 3000);
    sinks.push_back(r.sink);
    REQUIRE(scheduler->Submit(std::move(r.request)).ok());
  }
  sinks[0]->WaitTokens(3);
  scheduler.reset();
  for (auto& s : sinks) CHECK(s->WaitFinish().reason == FinishReason::kAbort);
  CHECK(engine.acquired_slots() == 0);
  CHECK(engine.releases_in_flight() == 0);
}

TEST_CASE("pipelined scheduler: host-sampled requests run one step at a time", "[scheduler]") {
  FakeEngineOptions eo = Options(true, true);
  FakeEngine engine(eo);
  auto scheduler = MakeScheduler(&engine);
  Req r = MakeRequest("penalised", Prompt(6), 12);
  r.request->sampling.presence_penalty = 0.5f;
  auto sink = r.sink;
  REQUIRE(scheduler->Submit(std::move(r.request)).ok());
  CHECK(sink->WaitFinish().completion_tokens == 12);
  CHECK(engine.launches_ahead() == 0);
  for (const auto& step : engine.steps())
    for (const SeqChunk& c : step.seqs) CHECK_FALSE(c.token_from_last_sample);
}

}  // namespace
}  // namespace moegraph
