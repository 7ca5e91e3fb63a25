// The daemon's metric set (metric_names.h), registered in one call so that
// the daemon and the exporter tests register exactly the same families.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace moegraph::metrics {

// Pointers into the registry (not owned; valid while it lives). Every
// member is set after a successful RegisterServerMetrics.
struct ServerMetrics {
  struct RequestCounters {  // moegraph_requests_total by finish_reason
    prometheus::Counter* stop = nullptr;
    prometheus::Counter* length = nullptr;
    prometheus::Counter* abort = nullptr;
    prometheus::Counter* error = nullptr;
  };
  RequestCounters requests;
  struct RejectedCounters {  // moegraph_requests_rejected_total by reason
    prometheus::Counter* queue_full = nullptr;
    prometheus::Counter* too_long = nullptr;
    prometheus::Counter* pool_exhausted = nullptr;
    prometheus::Counter* draining = nullptr;
    prometheus::Counter* duplicate_id = nullptr;
  };
  RejectedCounters rejected;
  prometheus::Histogram* time_to_first_token = nullptr;
  prometheus::Histogram* inter_token_latency = nullptr;
  prometheus::Histogram* request_duration = nullptr;
  prometheus::Histogram* queue_time = nullptr;
  // moegraph_step_duration_seconds{mode, bucket}: children appear with the
  // first step of their kind (StepDuration).
  prometheus::Family<prometheus::Histogram>* step_duration = nullptr;
  // moegraph_graph_replays_total{mode, bucket}: children with their first replay.
  prometheus::Family<prometheus::Counter>* graph_replays = nullptr;
  // moegraph_gpu_memory_bytes{device, kind}: children with the first report.
  prometheus::Family<prometheus::Gauge>* gpu_memory = nullptr;
  prometheus::Gauge* requests_running = nullptr;
  prometheus::Gauge* requests_waiting = nullptr;
  prometheus::Gauge* slots_used = nullptr;
  prometheus::Gauge* slots_capacity = nullptr;
  prometheus::Gauge* pool_tokens_capacity = nullptr;
  prometheus::Gauge* pool_tokens_reserved = nullptr;
  prometheus::Gauge* pool_tokens_used = nullptr;
  prometheus::Gauge* pool_pages_capacity = nullptr;
  prometheus::Gauge* pool_pages_reserved = nullptr;
  prometheus::Gauge* pool_pages_used = nullptr;
  prometheus::Gauge* request_max_tokens = nullptr;
  prometheus::Counter* prompt_tokens = nullptr;
  prometheus::Counter* generated_tokens = nullptr;
  prometheus::Counter* prefill_tokens = nullptr;
  prometheus::Counter* decode_tokens = nullptr;
  prometheus::Counter* steps = nullptr;
  prometheus::Counter* engine_step_seconds = nullptr;
  prometheus::Counter* scheduler_overhead_seconds = nullptr;
  prometheus::Counter* steps_ahead = nullptr;
  prometheus::Counter* dropped_tokens = nullptr;

  // The step-time histogram of `mode` and `bucket` (created on first use,
  // with FineLatencyBuckets; later calls return the same child).
  prometheus::Histogram& StepDuration(const std::string& mode, int bucket) const;
  // The replay counter of graph `mode` and `bucket` (created on first use).
  prometheus::Counter& GraphReplays(const std::string& mode, int bucket) const;
  // The gauge of `device`'s memory of `kind` (kMemoryUsed or kMemoryTotal).
  prometheus::Gauge& GpuMemory(const std::string& device, const char* kind) const;
  // The refusal counter of a reason of metric_names.h, or nullptr.
  prometheus::Counter* Rejected(const char* reason) const;
};

// Registers every family of metric_names.h in `registry` (all finish and
// refusal reasons up front, so that rates start at 0 rather than appear
// later). INVALID_ARGUMENT, with prometheus-cpp's reason, when a name clashes
// with a family of another type already there. Registering twice returns the
// same children (prometheus-cpp merges families of equal name and labels).
absl::StatusOr<ServerMetrics> RegisterServerMetrics(prometheus::Registry* registry);

}  // namespace moegraph::metrics
