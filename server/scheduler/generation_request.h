// A validated generation request as the scheduler runs it, and the events it
// streams back through the request's sink.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/sampling/sampler.h"

namespace moegraph {

using SteadyClock = std::chrono::steady_clock;

enum class FinishReason { kStop, kLength, kAbort, kError };
const char* FinishReasonName(FinishReason reason);  // "stop", "length", "abort", "error"

struct StopCriteria {
  int max_tokens = 1;  // generated tokens at most, >= 1
  int min_tokens = 0;  // EOS / stop ids / stop strings ignored before this many
  std::vector<std::string> stop_strings;
  std::vector<int32_t> stop_token_ids;
  std::vector<int32_t> eos_token_ids;  // empty when the request ignores EOS
  bool include_stop_str_in_output = false;
};

// One generated token's share of a stream. Sinks may merge several.
struct TokenEvent {
  int32_t token_id = 0;
  std::string text;  // may be empty (held back, or a partial UTF-8 sequence)
  std::optional<sampling::SampleResult> logprobs;  // when requested
};

struct FinishEvent {
  FinishReason reason = FinishReason::kStop;
  std::optional<std::string> stop_string;
  std::optional<int32_t> stop_token_id;
  int prompt_tokens = 0;
  int completion_tokens = 0;
  double queue_seconds = 0;  // arrival to first scheduled step
  double ttft_seconds = 0;   // arrival to first token (0 when none)
  double total_seconds = 0;  // arrival to finish
  std::string error_message;
  // Ended (reason abort) because the client read nothing for the stall
  // timeout while the stream's backlog was full: the sink should end the
  // call with RESOURCE_EXHAUSTED rather than queue more output.
  bool stalled = false;
};

// Receives a request's events, in order, on the scheduler thread: OnToken
// zero or more times, then OnFinish exactly once. Must not block.
class GenerationSink {
 public:
  virtual ~GenerationSink() = default;
  virtual void OnToken(TokenEvent event) = 0;
  virtual void OnFinish(FinishEvent event) = 0;
  // True while the client has more undelivered output than the sink may
  // hold: the scheduler then leaves the sequence out of its steps (its slot
  // and state kept) until this turns false, and calls Scheduler::Wake to say
  // so. Scheduler thread; must not block.
  virtual bool Backlogged() const { return false; }
};

struct GenerationRequest {
  std::string id;  // unique among queued and running requests
  std::vector<int32_t> prompt;
  sampling::SamplingParams sampling;
  StopCriteria stop;
  bool skip_special_tokens = true;
  // Shared: the stream that owns the call may go away before the scheduler
  // lets go of the request.
  std::shared_ptr<GenerationSink> sink;
  SteadyClock::time_point arrival = SteadyClock::now();
  // The caller's identity (CallerIdentity; "" for anonymous callers): ids
  // are unique per owner, and Abort reaches only the owner's requests.
  std::string owner;
  // Whose share of the queue (SchedulerOptions::max_waiting_per_identity)
  // this counts against: the owner, or the client's address for anonymous
  // callers. Empty: no share applies.
  std::string queue_share;
};

}  // namespace moegraph
