// Continuous batching over a fixed pool of sequence slots. One thread runs
// the steps: each step carries one decode token per running sequence, then
// prompt chunks of the sequences still prefilling, up to a per-step token
// budget (so long prompts never starve running decodes). New requests join
// at the next step; finished, aborted and cancelled ones leave the batch and
// free their slot in the step they end. With an engine that pipelines
// (Engine::pipelines), step N+1 is launched before step N's ids reach the
// host, its decode tokens read from the device; a sequence that stops at
// step N then frees its slot when N+1 is collected, its extra token dropped.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "engine/sampling/sampler.h"
#include "server/scheduler/generation_request.h"
#include "server/scheduler/host_step_buffers.h"
#include "server/scheduler/scheduler_observer.h"
#include "server/scheduler/sequence_output.h"
#include "server/text/text_codec.h"

namespace moegraph {

struct SchedulerOptions {
  int max_queue = 64;         // requests waiting for a slot beyond the free slots, >= 0
  int max_step_tokens = 256;  // token budget of one step (clamped to the engine's)
  // Requests of one caller (GenerationRequest::queue_share) waiting at once;
  // 0 = no limit.
  int max_waiting_per_identity = 0;
  // A sequence whose sink stays Backlogged this long is ended (FinishEvent::stalled).
  double stall_timeout_seconds = 30;
};

class Scheduler {
 public:
  // `engine`, `codec` (may be null: no text is streamed) and `observer` (may
  // be null) must outlive the scheduler. Starts the scheduler thread.
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(Engine* engine, const TextCodec* codec,
                                                           const SchedulerOptions& options,
                                                           SchedulerObserver* observer);
  // Aborts whatever is left (each sink gets its OnFinish) and joins.
  ~Scheduler();

  // Queues a validated request (prompt + max_tokens within the context
  // limit). Errors: UNAVAILABLE while draining, ALREADY_EXISTS for an id in
  // use, RESOURCE_EXHAUSTED when the queue is full or when the engine's state
  // pool can never hold the request's prompt + max_tokens (the message names
  // the limit). On error the request is dropped and its sink is never called.
  absl::Status Submit(std::unique_ptr<GenerationRequest> request);

  // A sink's backlog cleared: its paused sequence may run again. Any thread.
  void Wake();

  // Ends `owner`'s queued or running request `request_id` with finish
  // reason abort within one step. False when the owner has no such request
  // (another owner's request of that id is neither touched nor revealed).
  bool Abort(const std::string& owner, const std::string& request_id);
  bool Abort(const std::string& request_id) { return Abort("", request_id); }

  // Refuses new requests from now on (Submit returns UNAVAILABLE), lets the
  // queued and running ones go on until `deadline`, then aborts the rest and
  // returns once every sink has had its OnFinish. True when none was aborted.
  bool Drain(SteadyClock::time_point deadline);

  QueueStats queue_stats() const;

  // The most prompt + max_tokens one request can get: the engine's state
  // pool limit for one sequence (0: none beyond the context limit).
  int max_sequence_tokens() const { return max_sequence_tokens_; }

  // Counts a request refused before Submit (the service's validation, e.g.
  // "too_long") with the observer's refusals. Any thread.
  void ReportRejected(const char* reason);

  // Running sums since start, for the server's own overhead per token.
  struct Totals {
    uint64_t steps = 0;
    double step_seconds = 0;
    double engine_seconds = 0;
    uint64_t sampled_tokens = 0;
    uint64_t prompt_tokens = 0;
  };
  Totals totals() const;

 private:
  struct Sequence;

  Scheduler(Engine* engine, const TextCodec* codec, const SchedulerOptions& options,
            SchedulerObserver* observer, std::unique_ptr<HostStepBuffers> buffers);
  void Run();
  // Gives admitted requests their slot's engine state; one the engine cannot
  // hold yet goes back to the head of the queue with those after it.
  void Admit(std::vector<std::pair<std::unique_ptr<GenerationRequest>, int>>* admitted);
  // Runs the next step, or with a pipelining engine launches it and collects
  // the one before (docs/decode-step.md). False when nothing happened: no
  // sequence could take part (all paused for their clients) and none was in flight.
  bool RunStep();
  // Plans a step over running_ and launches it (or, with an engine that does
  // not pipeline, runs it): appends to inflight_. `ahead`: a step is in
  // flight and every id it samples stays on the device, so sequences
  // awaiting one take it as token_from_last_sample. False when no sequence
  // could take part.
  bool LaunchNext(bool ahead);
  // Takes the oldest in-flight step's results: streams, stops, retires.
  void CollectOldest();
  // Moves finished sequences out of running_: those a launched step still
  // names wait in retiring_, holding their slot; the rest free it.
  void RemoveFinished();
  void ReleaseSlotOf(const Sequence& seq);
  // Pauses running sequences whose sinks are backlogged; ends those stalled
  // past the timeout.
  void CheckBacklogs();
  void DecrementWaitingLocked(const GenerationRequest& request);
  // The index in free_slots_ of the slot a new request gets: the last (the
  // lowest slot, or the one freed last) with one slot group; with several,
  // the lowest free slot of the group running the fewest sequences.
  size_t PickFreeSlotLocked();
  // The key of a request in active_ids_ and aborts_: its owner and id
  // (ids are printable ASCII, so the newline cannot occur in one).
  static std::string ActiveKey(const std::string& owner, const std::string& id) {
    return owner + "\n" + id;
  }
  static std::string ActiveKey(const GenerationRequest& r) { return ActiveKey(r.owner, r.id); }
  void Finish(Sequence* seq, FinishReason reason, FinishEvent event);
  void FinishUnscheduled(std::unique_ptr<GenerationRequest> request, FinishReason reason,
                         const std::string& error);
  void ReportQueue();
  void ReportPool();  // scheduler thread (or before it runs)
  // Device memory, when `force` or a second after the last report (scheduler
  // thread, or before it runs).
  void ReportDeviceMemory(bool force);

  Engine* const engine_;
  const TextCodec* const codec_;
  const SchedulerOptions options_;
  SchedulerObserver* const observer_;
  const int num_slots_;
  const int step_budget_;
  const int max_sequence_tokens_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;                         // new work, aborts, shutdown
  std::condition_variable idle_cv_;                         // a request left (Drain waits on it)
  std::deque<std::unique_ptr<GenerationRequest>> waiting_;  // guarded by mu_
  std::vector<int> free_slots_;                             // guarded by mu_
  std::vector<int> group_slots_;                            // slots per Engine::slot_group
  std::vector<int> group_free_;                  // scratch of PickFreeSlotLocked; guarded by mu_
  absl::flat_hash_set<std::string> active_ids_;  // ActiveKey of queued + running; guarded by mu_
  absl::flat_hash_set<std::string> aborts_;      // ActiveKeys to abort; guarded by mu_
  int num_running_ = 0;                          // guarded by mu_
  bool draining_ = false;                        // guarded by mu_
  bool abort_all_ = false;                       // guarded by mu_
  bool shutdown_ = false;                        // guarded by mu_
  bool woken_ = false;                           // guarded by mu_
  absl::flat_hash_map<std::string, int> waiting_per_share_;  // guarded by mu_
  Totals totals_;                                            // guarded by mu_

  // Scheduler thread only.
  std::vector<std::unique_ptr<Sequence>> running_;  // in admission order
  std::unique_ptr<HostStepBuffers> buffers_;
  sampling::Sampler sampler_;
  std::vector<Sequence*> step_seqs_;  // the sequence of each chunk of the plan being built
  StepPlan plan_;
  // A launched step, until CollectOldest takes its results (at most two).
  struct InFlight {
    std::vector<SeqChunk> chunks;
    std::vector<Sequence*> seqs;  // of each chunk: in running_ or retiring_ until collected
    HostStepBuffers::Set* buffers = nullptr;
    int num_tokens = 0, decode_tokens = 0;
    bool device_only = true;      // every want_logits chunk SamplesOnDevice
    bool launched_ahead = false;  // another step was in flight at its launch
    absl::Status status;          // of the launch (then of the collect)
    StepResult result;
    const char* mode = "eager";
    int bucket = 0;
    SteadyClock::time_point start, engine_start, launch_end;
  };
  std::deque<InFlight> inflight_;
  std::vector<InFlight> spare_;  // collected records, reused (their vectors keep capacity)
  std::vector<std::unique_ptr<Sequence>> retiring_;  // finished, named by a launched step
  SteadyClock::time_point last_step_end_{};
  SteadyClock::time_point last_memory_report_{};  // ReportDeviceMemory's

  std::thread thread_;
};

}  // namespace moegraph
