// RegisterServerMetrics: the daemon's families with their names, help and buckets.
#include "server/metrics/server_metrics.h"

#include "engine/common/status_macros.h"
#include "server/metrics/metric_names.h"

namespace moegraph::metrics {

absl::StatusOr<ServerMetrics> RegisterServerMetrics(Registry* registry) {
  ServerMetrics m;
  auto requests = [&](const char* reason) {
    return registry->AddCounter(kRequestsTotal, kRequestsHelp, {{kFinishReasonLabel, reason}});
  };
  ASSIGN_OR_RETURN(m.requests.stop, requests(kFinishStop));
  ASSIGN_OR_RETURN(m.requests.length, requests(kFinishLength));
  ASSIGN_OR_RETURN(m.requests.abort, requests(kFinishAbort));
  ASSIGN_OR_RETURN(m.requests.error, requests(kFinishError));

  ASSIGN_OR_RETURN(
      m.time_to_first_token,
      registry->AddHistogram(kTimeToFirstTokenSeconds, kTimeToFirstTokenHelp, LatencyBuckets()));
  ASSIGN_OR_RETURN(m.inter_token_latency,
                   registry->AddHistogram(kInterTokenLatencySeconds, kInterTokenLatencyHelp,
                                          FineLatencyBuckets()));
  ASSIGN_OR_RETURN(
      m.request_duration,
      registry->AddHistogram(kRequestDurationSeconds, kRequestDurationHelp, LatencyBuckets()));
  ASSIGN_OR_RETURN(m.queue_time,
                   registry->AddHistogram(kQueueTimeSeconds, kQueueTimeHelp, LatencyBuckets()));
  ASSIGN_OR_RETURN(
      m.step_duration_eager,
      registry->AddHistogram(kStepDurationSeconds, kStepDurationHelp, FineLatencyBuckets(),
                             {{kStepModeLabel, kStepModeEager}}));

  ASSIGN_OR_RETURN(m.requests_running, registry->AddGauge(kRequestsRunning, kRequestsRunningHelp));
  ASSIGN_OR_RETURN(m.requests_waiting, registry->AddGauge(kRequestsWaiting, kRequestsWaitingHelp));
  ASSIGN_OR_RETURN(m.slots_used, registry->AddGauge(kSlotsUsed, kSlotsUsedHelp));
  ASSIGN_OR_RETURN(m.slots_capacity, registry->AddGauge(kSlotsCapacity, kSlotsCapacityHelp));

  ASSIGN_OR_RETURN(m.prompt_tokens, registry->AddCounter(kPromptTokensTotal, kPromptTokensHelp));
  ASSIGN_OR_RETURN(m.generated_tokens,
                   registry->AddCounter(kGeneratedTokensTotal, kGeneratedTokensHelp));
  return m;
}

}  // namespace moegraph::metrics
