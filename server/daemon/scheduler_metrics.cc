#include "server/daemon/scheduler_metrics.h"

#include <algorithm>

#include "engine/common/logging.h"
#include "engine/common/status_macros.h"
#include "server/metrics/metric_names.h"

namespace moegraph {

absl::StatusOr<std::unique_ptr<SchedulerMetrics>> SchedulerMetrics::Create(
    prometheus::Registry* registry, int slots) {
  std::unique_ptr<SchedulerMetrics> m(new SchedulerMetrics());
  ASSIGN_OR_RETURN(m->m_, metrics::RegisterServerMetrics(registry));
  m->m_.slots_capacity->Set(slots);
  return m;
}

void SchedulerMetrics::OnStep(const StepStats& s) {
  const int bucket = s.bucket > 0 ? s.bucket : s.sequences;
  prometheus::Histogram*& step = step_durations_[{s.mode, bucket}];
  if (step == nullptr) step = &m_.StepDuration(s.mode, bucket);
  step->Observe(s.step_seconds);
  if (s.mode != metrics::kStepModeEager) {
    prometheus::Counter*& replays = graph_replays_[{s.mode, bucket}];
    if (replays == nullptr) replays = &m_.GraphReplays(s.mode, bucket);
    replays->Increment();
  }
  m_.engine_step_seconds->Increment(s.engine_seconds);
  m_.scheduler_overhead_seconds->Increment(std::max(0.0, s.step_seconds - s.engine_seconds));
  m_.steps->Increment();
  if (s.launched_ahead) m_.steps_ahead->Increment();
  m_.dropped_tokens->Increment(s.dropped_tokens);
  m_.prefill_tokens->Increment(s.prefill_tokens);
  m_.decode_tokens->Increment(s.decode_tokens);
}

void SchedulerMetrics::OnQueue(const QueueStats& q) {
  m_.requests_running->Set(q.running);
  m_.requests_waiting->Set(q.waiting);
  m_.slots_used->Set(q.slots_in_use);
}

void SchedulerMetrics::OnScheduled(double queue_seconds, int prompt_tokens) {
  m_.queue_time->Observe(queue_seconds);
  m_.prompt_tokens->Increment(prompt_tokens);
}

void SchedulerMetrics::OnFirstToken(double ttft_seconds) {
  m_.time_to_first_token->Observe(ttft_seconds);
  m_.generated_tokens->Increment();
}

void SchedulerMetrics::OnNextToken(double inter_token_seconds) {
  m_.inter_token_latency->Observe(inter_token_seconds);
  m_.generated_tokens->Increment();
}

void SchedulerMetrics::OnFinished(const FinishEvent& e) {
  prometheus::Counter* by_reason[] = {m_.requests.stop, m_.requests.length, m_.requests.abort,
                                      m_.requests.error};
  by_reason[static_cast<size_t>(e.reason)]->Increment();
  m_.request_duration->Observe(e.total_seconds);
}

void SchedulerMetrics::OnRejected(const char* reason) {
  if (prometheus::Counter* counter = m_.Rejected(reason); counter != nullptr) {
    counter->Increment();
  } else {
    LOG_WARN << "metrics: no refusal counter for reason \"" << reason << "\"";
  }
}

void SchedulerMetrics::OnStatePool(const StatePoolStats& p) {
  m_.pool_tokens_capacity->Set(static_cast<double>(p.capacity_tokens));
  m_.pool_tokens_reserved->Set(static_cast<double>(p.reserved_tokens));
  m_.pool_tokens_used->Set(static_cast<double>(p.used_tokens));
  m_.pool_pages_capacity->Set(static_cast<double>(p.capacity_pages));
  m_.pool_pages_reserved->Set(static_cast<double>(p.reserved_pages));
  m_.pool_pages_used->Set(static_cast<double>(p.used_pages));
  m_.request_max_tokens->Set(p.max_sequence_tokens);
}

void SchedulerMetrics::OnDeviceMemory(const std::vector<DeviceMemoryStats>& devices) {
  for (const DeviceMemoryStats& d : devices) {
    m_.GpuMemory(d.device, metrics::kMemoryUsed).Set(static_cast<double>(d.used_bytes));
    m_.GpuMemory(d.device, metrics::kMemoryTotal).Set(static_cast<double>(d.total_bytes));
  }
}

}  // namespace moegraph
