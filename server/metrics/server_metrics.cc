// RegisterServerMetrics: the daemon's families with their names, help and buckets.
#include "server/metrics/server_metrics.h"

#include <cstring>
#include <exception>

#include "absl/strings/str_cat.h"
#include "server/metrics/metric_names.h"
#include "server/metrics/metrics.h"

namespace moegraph::metrics {
namespace {

prometheus::Gauge* AddGauge(prometheus::Registry* r, const char* name, const char* help) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(*r).Add({});
}

prometheus::Counter* AddCounter(prometheus::Registry* r, const char* name, const char* help) {
  return &prometheus::BuildCounter().Name(name).Help(help).Register(*r).Add({});
}

prometheus::Histogram* AddHistogram(prometheus::Registry* r, const char* name, const char* help,
                                    const std::vector<double>& buckets) {
  return &prometheus::BuildHistogram().Name(name).Help(help).Register(*r).Add({}, buckets);
}

}  // namespace

prometheus::Histogram& ServerMetrics::StepDuration(const std::string& mode, int bucket) const {
  return step_duration->Add({{kStepModeLabel, mode}, {kStepBucketLabel, std::to_string(bucket)}},
                            FineLatencyBuckets());
}

prometheus::Counter& ServerMetrics::GraphReplays(const std::string& mode, int bucket) const {
  return graph_replays->Add({{kStepModeLabel, mode}, {kStepBucketLabel, std::to_string(bucket)}});
}

prometheus::Gauge& ServerMetrics::GpuMemory(const std::string& device, const char* kind) const {
  return gpu_memory->Add({{kDeviceLabel, device}, {kMemoryKindLabel, kind}});
}

prometheus::Counter* ServerMetrics::Rejected(const char* reason) const {
  const std::pair<const char*, prometheus::Counter*> table[] = {
      {kRejectQueueFull, rejected.queue_full},         {kRejectTooLong, rejected.too_long},
      {kRejectPoolExhausted, rejected.pool_exhausted}, {kRejectDraining, rejected.draining},
      {kRejectDuplicateId, rejected.duplicate_id},
  };
  for (const auto& [name, counter] : table) {
    if (std::strcmp(name, reason) == 0) return counter;
  }
  return nullptr;
}

absl::StatusOr<ServerMetrics> RegisterServerMetrics(prometheus::Registry* r) {
  ServerMetrics m;
  try {  // prometheus-cpp throws std::invalid_argument on a clash
    auto& requests =
        prometheus::BuildCounter().Name(kRequestsTotal).Help(kRequestsHelp).Register(*r);
    m.requests.stop = &requests.Add({{kFinishReasonLabel, kFinishStop}});
    m.requests.length = &requests.Add({{kFinishReasonLabel, kFinishLength}});
    m.requests.abort = &requests.Add({{kFinishReasonLabel, kFinishAbort}});
    m.requests.error = &requests.Add({{kFinishReasonLabel, kFinishError}});

    auto& rejected = prometheus::BuildCounter()
                         .Name(kRequestsRejectedTotal)
                         .Help(kRequestsRejectedHelp)
                         .Register(*r);
    m.rejected.queue_full = &rejected.Add({{kRejectReasonLabel, kRejectQueueFull}});
    m.rejected.too_long = &rejected.Add({{kRejectReasonLabel, kRejectTooLong}});
    m.rejected.pool_exhausted = &rejected.Add({{kRejectReasonLabel, kRejectPoolExhausted}});
    m.rejected.draining = &rejected.Add({{kRejectReasonLabel, kRejectDraining}});
    m.rejected.duplicate_id = &rejected.Add({{kRejectReasonLabel, kRejectDuplicateId}});

    m.time_to_first_token =
        AddHistogram(r, kTimeToFirstTokenSeconds, kTimeToFirstTokenHelp, LatencyBuckets());
    m.inter_token_latency =
        AddHistogram(r, kInterTokenLatencySeconds, kInterTokenLatencyHelp, FineLatencyBuckets());
    m.request_duration =
        AddHistogram(r, kRequestDurationSeconds, kRequestDurationHelp, LatencyBuckets());
    m.queue_time = AddHistogram(r, kQueueTimeSeconds, kQueueTimeHelp, LatencyBuckets());
    m.step_duration = &prometheus::BuildHistogram()
                           .Name(kStepDurationSeconds)
                           .Help(kStepDurationHelp)
                           .Register(*r);
    m.graph_replays =
        &prometheus::BuildCounter().Name(kGraphReplaysTotal).Help(kGraphReplaysHelp).Register(*r);
    m.gpu_memory =
        &prometheus::BuildGauge().Name(kGpuMemoryBytes).Help(kGpuMemoryHelp).Register(*r);

    m.requests_running = AddGauge(r, kRequestsRunning, kRequestsRunningHelp);
    m.requests_waiting = AddGauge(r, kRequestsWaiting, kRequestsWaitingHelp);
    m.slots_used = AddGauge(r, kSlotsUsed, kSlotsUsedHelp);
    m.slots_capacity = AddGauge(r, kSlotsCapacity, kSlotsCapacityHelp);
    m.pool_tokens_capacity = AddGauge(r, kStatePoolTokensCapacity, kStatePoolTokensCapacityHelp);
    m.pool_tokens_reserved = AddGauge(r, kStatePoolTokensReserved, kStatePoolTokensReservedHelp);
    m.pool_tokens_used = AddGauge(r, kStatePoolTokensUsed, kStatePoolTokensUsedHelp);
    m.pool_pages_capacity = AddGauge(r, kStatePoolPagesCapacity, kStatePoolPagesCapacityHelp);
    m.pool_pages_reserved = AddGauge(r, kStatePoolPagesReserved, kStatePoolPagesReservedHelp);
    m.pool_pages_used = AddGauge(r, kStatePoolPagesUsed, kStatePoolPagesUsedHelp);
    m.request_max_tokens = AddGauge(r, kRequestMaxTokens, kRequestMaxTokensHelp);

    m.prompt_tokens = AddCounter(r, kPromptTokensTotal, kPromptTokensHelp);
    m.generated_tokens = AddCounter(r, kGeneratedTokensTotal, kGeneratedTokensHelp);
    m.prefill_tokens = AddCounter(r, kPrefillTokensTotal, kPrefillTokensHelp);
    m.decode_tokens = AddCounter(r, kDecodeTokensTotal, kDecodeTokensHelp);
    m.steps = AddCounter(r, kStepsTotal, kStepsHelp);
    m.engine_step_seconds = AddCounter(r, kEngineStepSecondsTotal, kEngineStepSecondsHelp);
    m.scheduler_overhead_seconds =
        AddCounter(r, kSchedulerOverheadSecondsTotal, kSchedulerOverheadSecondsHelp);
    m.steps_ahead = AddCounter(r, kStepsAheadTotal, kStepsAheadHelp);
    m.dropped_tokens = AddCounter(r, kDroppedTokensTotal, kDroppedTokensHelp);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics: registering the families: ", e.what()));
  }
  return m;
}

}  // namespace moegraph::metrics
