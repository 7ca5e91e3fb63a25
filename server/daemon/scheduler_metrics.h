// Feeds the daemon's Prometheus metrics (server/metrics/metric_names.h) from
// the scheduler's observer calls: requests by finish reason, TTFT,
// inter-token, end-to-end and queue time, running / waiting requests, slot
// usage, prompt, prefill, decode and generated tokens, step time by mode and
// bucket, the split of step time between Engine::Step and the server,
// admission refusals by reason, and the state pool's capacity and use.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/registry.h"
#include "server/metrics/server_metrics.h"
#include "server/scheduler/scheduler_observer.h"

namespace moegraph {

class SchedulerMetrics final : public SchedulerObserver {
 public:
  // Registers the families in `registry`, which must outlive this object.
  static absl::StatusOr<std::unique_ptr<SchedulerMetrics>> Create(prometheus::Registry* registry,
                                                                  int slots);

  void OnStep(const StepStats& stats) override;
  void OnQueue(const QueueStats& stats) override;
  void OnScheduled(double queue_seconds, int prompt_tokens) override;
  void OnFirstToken(double ttft_seconds) override;
  void OnNextToken(double inter_token_seconds) override;
  void OnFinished(const FinishEvent& event) override;
  void OnRejected(const char* reason) override;
  void OnStatePool(const StatePoolStats& stats) override;
  void OnDeviceMemory(const std::vector<DeviceMemoryStats>& devices) override;

 private:
  SchedulerMetrics() = default;

  metrics::ServerMetrics m_;  // the shared metric set
  // Step-time children by (mode, bucket); OnStep runs on the scheduler
  // thread only, so this cache needs no lock.
  std::map<std::pair<std::string, int>, prometheus::Histogram*> step_durations_;
  std::map<std::pair<std::string, int>, prometheus::Counter*> graph_replays_;  // the same
};

}  // namespace moegraph
