#include "server/daemon/scheduler_metrics.h"

#include <algorithm>
#include <cstring>

#include "engine/common/status_macros.h"

namespace moegraph {

absl::StatusOr<std::unique_ptr<SchedulerMetrics>> SchedulerMetrics::Create(metrics::Registry* r,
                                                                           int slots) {
  std::unique_ptr<SchedulerMetrics> m(new SchedulerMetrics());
  const char* reasons[] = {"stop", "length", "abort", "error"};
  for (int i = 0; i < 4; ++i) {
    ASSIGN_OR_RETURN(m->requests_[i], r->AddCounter("moegraph_requests_total",
                                                    "Requests finished, by finish reason.",
                                                    {{"finish_reason", reasons[i]}}));
  }
  ASSIGN_OR_RETURN(m->ttft_,
                   r->AddHistogram("moegraph_time_to_first_token_seconds",
                                   "Time from a request's arrival to its first generated token.",
                                   metrics::LatencyBuckets()));
  ASSIGN_OR_RETURN(m->inter_token_,
                   r->AddHistogram("moegraph_inter_token_latency_seconds",
                                   "Time between two consecutive generated tokens of one request.",
                                   metrics::FineLatencyBuckets()));
  ASSIGN_OR_RETURN(m->request_duration_,
                   r->AddHistogram("moegraph_request_duration_seconds",
                                   "Time from a request's arrival to its final message (end to "
                                   "end).",
                                   metrics::LatencyBuckets()));
  ASSIGN_OR_RETURN(m->queue_time_,
                   r->AddHistogram("moegraph_queue_time_seconds",
                                   "Time a request waited before it was given a sequence slot.",
                                   metrics::LatencyBuckets()));
  ASSIGN_OR_RETURN(m->step_duration_,
                   r->AddHistogram("moegraph_step_duration_seconds",
                                   "Duration of one scheduler step, by execution mode.",
                                   metrics::FineLatencyBuckets(), {{"mode", "eager"}}));
  ASSIGN_OR_RETURN(m->running_,
                   r->AddGauge("moegraph_requests_running", "Requests holding a sequence slot."));
  ASSIGN_OR_RETURN(m->waiting_, r->AddGauge("moegraph_requests_waiting",
                                            "Requests admitted and waiting for a slot."));
  ASSIGN_OR_RETURN(m->slots_used_, r->AddGauge("moegraph_slots_used", "Sequence slots in use."));
  ASSIGN_OR_RETURN(m->slots_capacity_,
                   r->AddGauge("moegraph_slots_capacity", "Sequence slots configured."));
  m->slots_capacity_->Set(slots);
  ASSIGN_OR_RETURN(m->prompt_tokens_, r->AddCounter("moegraph_prompt_tokens_total",
                                                    "Prompt tokens of admitted requests."));
  ASSIGN_OR_RETURN(m->generated_tokens_,
                   r->AddCounter("moegraph_generated_tokens_total", "Tokens generated."));

  ASSIGN_OR_RETURN(m->engine_seconds_,
                   r->AddCounter("moegraph_engine_step_seconds_total",
                                 "Time spent inside the engine's forward steps."));
  ASSIGN_OR_RETURN(m->overhead_seconds_,
                   r->AddCounter("moegraph_scheduler_overhead_seconds_total",
                                 "Scheduler step time outside the engine (planning, sampling, "
                                 "detokenizing, streaming)."));
  ASSIGN_OR_RETURN(m->steps_, r->AddCounter("moegraph_steps_total", "Scheduler steps run."));
  const char* refusals[] = {"queue_full", "draining", "duplicate_id"};
  for (int i = 0; i < 3; ++i) {
    ASSIGN_OR_RETURN(m->rejected_[i], r->AddCounter("moegraph_requests_rejected_total",
                                                    "Requests refused at admission, by reason.",
                                                    {{"reason", refusals[i]}}));
  }
  return m;
}

void SchedulerMetrics::OnStep(const StepStats& s) {
  step_duration_->Observe(s.step_seconds);
  engine_seconds_->Inc(s.engine_seconds);
  overhead_seconds_->Inc(std::max(0.0, s.step_seconds - s.engine_seconds));
  steps_->Inc();
}

void SchedulerMetrics::OnQueue(const QueueStats& q) {
  running_->Set(q.running);
  waiting_->Set(q.waiting);
  slots_used_->Set(q.slots_in_use);
}

void SchedulerMetrics::OnScheduled(double queue_seconds, int prompt_tokens) {
  queue_time_->Observe(queue_seconds);
  prompt_tokens_->Inc(prompt_tokens);
}

void SchedulerMetrics::OnFirstToken(double ttft_seconds) {
  ttft_->Observe(ttft_seconds);
  generated_tokens_->Inc();
}

void SchedulerMetrics::OnNextToken(double inter_token_seconds) {
  inter_token_->Observe(inter_token_seconds);
  generated_tokens_->Inc();
}

void SchedulerMetrics::OnFinished(const FinishEvent& e) {
  requests_[static_cast<size_t>(e.reason)]->Inc();
  request_duration_->Observe(e.total_seconds);
}

void SchedulerMetrics::OnRejected(const char* reason) {
  size_t i = 2;
  if (std::strcmp(reason, "queue_full") == 0) i = 0;
  if (std::strcmp(reason, "draining") == 0) i = 1;
  rejected_[i]->Inc();
}

}  // namespace moegraph
