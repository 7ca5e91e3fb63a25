// The daemon's metric set (metric_names.h), registered in one call so that
// the daemon and the exporter tests register exactly the same families.
#pragma once

#include "absl/status/statusor.h"
#include "server/metrics/metrics.h"

namespace moegraph::metrics {

// Pointers into the registry (not owned; valid while it lives). Every
// member is set after a successful RegisterServerMetrics.
struct ServerMetrics {
  struct RequestCounters {  // moegraph_requests_total by finish_reason
    Counter* stop = nullptr;
    Counter* length = nullptr;
    Counter* abort = nullptr;
    Counter* error = nullptr;
  };
  RequestCounters requests;
  Histogram* time_to_first_token = nullptr;
  Histogram* inter_token_latency = nullptr;
  Histogram* request_duration = nullptr;
  Histogram* queue_time = nullptr;
  Histogram* step_duration_eager = nullptr;  // mode="eager"; add other modes with
                                             // kStepDurationSeconds/kStepDurationHelp
                                             // and FineLatencyBuckets()
  Gauge* requests_running = nullptr;
  Gauge* requests_waiting = nullptr;
  Gauge* slots_used = nullptr;
  Gauge* slots_capacity = nullptr;
  Counter* prompt_tokens = nullptr;
  Counter* generated_tokens = nullptr;
};

// Registers every family of metric_names.h in `registry` (all four finish
// reasons up front, so that rates start at 0 rather than appear later). Fails
// if any of them is registered already.
absl::StatusOr<ServerMetrics> RegisterServerMetrics(Registry* registry);

}  // namespace moegraph::metrics
