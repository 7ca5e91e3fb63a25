// What the scheduler reports as it runs, for metrics. Called on the
// scheduler thread (OnRejected: on the submitting thread); implementations
// must be cheap and thread-safe.
#pragma once

#include <string>
#include <vector>

#include "engine/engine.h"
#include "server/scheduler/generation_request.h"

namespace moegraph {

struct StepStats {
  double step_seconds = 0;    // the whole step: planning, Engine::Step, sampling, streaming
  double engine_seconds = 0;  // Engine::Step alone
  int prefill_tokens = 0;
  int decode_tokens = 0;
  int sequences = 0;
  // How the step ran: "eager" (no graph), or the graph mode the step
  // replayed, and the batch bucket of that graph (0: none; metrics then use
  // the number of sequences).
  std::string mode = "eager";
  int bucket = 0;
  // Pipelined engines: the step was launched before the previous one's ids
  // reached the host; tokens it computed for sequences that had ended by
  // then (dropped).
  bool launched_ahead = false;
  int dropped_tokens = 0;
};

struct QueueStats {
  int waiting = 0;
  int running = 0;
  int slots_in_use = 0;
  int slots = 0;
};

class SchedulerObserver {
 public:
  virtual ~SchedulerObserver() = default;
  virtual void OnStep(const StepStats& /*stats*/) {}
  virtual void OnQueue(const QueueStats& /*stats*/) {}
  // A request got its first step: seconds since arrival, and its prompt size.
  virtual void OnScheduled(double /*queue_seconds*/, int /*prompt_tokens*/) {}
  virtual void OnFirstToken(double /*ttft_seconds*/) {}
  // A token after the first: seconds since the request's previous token.
  virtual void OnNextToken(double /*inter_token_seconds*/) {}
  virtual void OnFinished(const FinishEvent& /*event*/) {}
  // Admission refused a request: "queue_full", "too_long", "pool_exhausted",
  // "draining" or "duplicate_id".
  virtual void OnRejected(const char* /*reason*/) {}
  // The engine's state pool after admissions, steps and releases (scheduler
  // thread; once from Scheduler::Create's thread before any request).
  virtual void OnStatePool(const StatePoolStats& /*stats*/) {}
  // The engine's device memory (scheduler thread; once before any request,
  // then at most once a second while steps run). Not called for an engine
  // without devices.
  virtual void OnDeviceMemory(const std::vector<DeviceMemoryStats>& /*devices*/) {}
};

}  // namespace moegraph
