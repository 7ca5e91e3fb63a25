// Helpers of the scheduler tests: a sink that records what it is sent,
// requests, and what greedy decoding on the FakeEngine yields.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "server/scheduler/scheduler.h"
#include "server/testing/fake_engine.h"

namespace moegraph::scheduler_testing {

using namespace std::chrono_literals;

class RecordingSink final : public GenerationSink {
 public:
  void OnToken(TokenEvent event) override {
    std::lock_guard<std::mutex> lock(mu_);
    ids_.push_back(event.token_id);
    cv_.notify_all();
  }
  void OnFinish(FinishEvent event) override {
    std::lock_guard<std::mutex> lock(mu_);
    finish_ = event;
    cv_.notify_all();
  }
  // Waits for OnFinish (fails the test after 10 s).
  FinishEvent WaitFinish() {
    std::unique_lock<std::mutex> lock(mu_);
    REQUIRE(cv_.wait_for(lock, 10s, [&] { return finish_.has_value(); }));
    return *finish_;
  }
  void WaitTokens(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    REQUIRE(cv_.wait_for(lock, 10s, [&] { return ids_.size() >= n || finish_.has_value(); }));
  }
  std::vector<int32_t> ids() {
    std::lock_guard<std::mutex> lock(mu_);
    return ids_;
  }
  bool finished() {
    std::lock_guard<std::mutex> lock(mu_);
    return finish_.has_value();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int32_t> ids_;
  std::optional<FinishEvent> finish_;
};

struct Req {
  std::unique_ptr<GenerationRequest> request;
  std::shared_ptr<RecordingSink> sink;
};

inline Req MakeRequest(const std::string& id, std::vector<int32_t> prompt, int max_tokens) {
  Req r;
  r.request = std::make_unique<GenerationRequest>();
  r.request->id = id;
  r.request->prompt = std::move(prompt);
  r.request->stop.max_tokens = max_tokens;
  r.sink = std::make_shared<RecordingSink>();
  r.request->sink = r.sink;
  return r;
}

inline std::vector<int32_t> Prompt(int n, int start = 10) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(start + i);
  return p;
}

// What greedy decoding on the fake engine yields, computed directly.
inline std::vector<int32_t> ExpectedGreedy(std::vector<int32_t> history, int n, int vocab = 320) {
  std::vector<float> logits(vocab);
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    FakeEngine::LogitsFor(history, vocab, {1}, logits.data());
    int32_t t =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(t);
    history.push_back(t);
  }
  return out;
}

inline std::unique_ptr<Scheduler> MakeScheduler(FakeEngine* engine, int max_queue = 16,
                                                int max_step_tokens = 64) {
  SchedulerOptions options;
  options.max_queue = max_queue;
  options.max_step_tokens = max_step_tokens;
  auto s = Scheduler::Create(engine, nullptr, options, nullptr);
  REQUIRE(s.ok());
  return std::move(*s);
}

}  // namespace moegraph::scheduler_testing
