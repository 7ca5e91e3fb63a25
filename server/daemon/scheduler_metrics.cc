#include "server/daemon/scheduler_metrics.h"

#include <algorithm>
#include <cstring>

#include "engine/common/status_macros.h"

namespace moegraph {

absl::StatusOr<std::unique_ptr<SchedulerMetrics>> SchedulerMetrics::Create(metrics::Registry* r,
                                                                           int slots) {
  std::unique_ptr<SchedulerMetrics> m(new SchedulerMetrics());
  ASSIGN_OR_RETURN(m->m_, metrics::RegisterServerMetrics(r));
  m->requests_ = {m->m_.requests.stop, m->m_.requests.length, m->m_.requests.abort,
                  m->m_.requests.error};
  m->m_.slots_capacity->Set(slots);

  ASSIGN_OR_RETURN(m->engine_seconds_,
                   r->AddCounter("moegraph_engine_step_seconds_total",
                                 "Time spent inside the engine's forward steps."));
  ASSIGN_OR_RETURN(m->overhead_seconds_,
                   r->AddCounter("moegraph_scheduler_overhead_seconds_total",
                                 "Scheduler step time outside the engine (planning, sampling, "
                                 "detokenizing, handing tokens to the streams)."));
  ASSIGN_OR_RETURN(m->steps_, r->AddCounter("moegraph_steps_total", "Scheduler steps run."));
  const char* refusals[] = {"queue_full", "draining", "duplicate_id"};
  for (size_t i = 0; i < m->rejected_.size(); ++i) {
    ASSIGN_OR_RETURN(m->rejected_[i], r->AddCounter("moegraph_requests_rejected_total",
                                                    "Requests refused at admission, by reason.",
                                                    {{"reason", refusals[i]}}));
  }
  return m;
}

void SchedulerMetrics::OnStep(const StepStats& s) {
  m_.step_duration_eager->Observe(s.step_seconds);
  engine_seconds_->Inc(s.engine_seconds);
  overhead_seconds_->Inc(std::max(0.0, s.step_seconds - s.engine_seconds));
  steps_->Inc();
}

void SchedulerMetrics::OnQueue(const QueueStats& q) {
  m_.requests_running->Set(q.running);
  m_.requests_waiting->Set(q.waiting);
  m_.slots_used->Set(q.slots_in_use);
}

void SchedulerMetrics::OnScheduled(double queue_seconds, int prompt_tokens) {
  m_.queue_time->Observe(queue_seconds);
  m_.prompt_tokens->Inc(prompt_tokens);
}

void SchedulerMetrics::OnFirstToken(double ttft_seconds) {
  m_.time_to_first_token->Observe(ttft_seconds);
  m_.generated_tokens->Inc();
}

void SchedulerMetrics::OnNextToken(double inter_token_seconds) {
  m_.inter_token_latency->Observe(inter_token_seconds);
  m_.generated_tokens->Inc();
}

void SchedulerMetrics::OnFinished(const FinishEvent& e) {
  requests_[static_cast<size_t>(e.reason)]->Inc();
  m_.request_duration->Observe(e.total_seconds);
}

void SchedulerMetrics::OnRejected(const char* reason) {
  size_t i = 2;
  if (std::strcmp(reason, "queue_full") == 0) i = 0;
  if (std::strcmp(reason, "draining") == 0) i = 1;
  rejected_[i]->Inc();
}

}  // namespace moegraph
