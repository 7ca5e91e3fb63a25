// Feeds the daemon's Prometheus metrics (server/metrics/metric_names.h) from
// the scheduler's observer calls: requests by finish reason, TTFT,
// inter-token, end-to-end and queue time, running / waiting requests, slot
// usage, prompt and generated tokens, step time; plus the split of step time
// between Engine::Step and the server, and admission refusals.
#pragma once

#include <array>
#include <memory>

#include "absl/status/statusor.h"
#include "server/metrics/metrics.h"
#include "server/metrics/server_metrics.h"
#include "server/scheduler/scheduler_observer.h"

namespace moegraph {

class SchedulerMetrics final : public SchedulerObserver {
 public:
  // Registers the families in `registry`, which must outlive this object.
  static absl::StatusOr<std::unique_ptr<SchedulerMetrics>> Create(metrics::Registry* registry,
                                                                  int slots);

  void OnStep(const StepStats& stats) override;
  void OnQueue(const QueueStats& stats) override;
  void OnScheduled(double queue_seconds, int prompt_tokens) override;
  void OnFirstToken(double ttft_seconds) override;
  void OnNextToken(double inter_token_seconds) override;
  void OnFinished(const FinishEvent& event) override;
  void OnRejected(const char* reason) override;

 private:
  SchedulerMetrics() = default;

  metrics::ServerMetrics m_;                     // the shared metric set
  std::array<metrics::Counter*, 4> requests_{};  // m_.requests by FinishReason
  metrics::Counter* engine_seconds_ = nullptr;
  metrics::Counter* overhead_seconds_ = nullptr;
  metrics::Counter* steps_ = nullptr;
  std::array<metrics::Counter*, 3> rejected_{};  // queue_full, draining, duplicate_id
};

}  // namespace moegraph
