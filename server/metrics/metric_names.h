// The names, help texts and label values of the metrics moegraphd exports, in
// one place so that the daemon, its tests and dashboards agree on them.
// Units are base units (seconds, tokens); counters end in _total.
#pragma once

namespace moegraph::metrics {

// Finished requests by why they finished.
inline constexpr char kRequestsTotal[] = "moegraph_requests_total";
inline constexpr char kRequestsHelp[] = "Requests finished, by finish reason.";
inline constexpr char kFinishReasonLabel[] = "finish_reason";
inline constexpr char kFinishStop[] = "stop";      // EOS token or a stop string
inline constexpr char kFinishLength[] = "length";  // max_tokens or the context limit
inline constexpr char kFinishAbort[] = "abort";    // cancelled by the client or its deadline
inline constexpr char kFinishError[] = "error";    // failed inside the daemon

// Latency histograms (seconds).
inline constexpr char kTimeToFirstTokenSeconds[] = "moegraph_time_to_first_token_seconds";
inline constexpr char kTimeToFirstTokenHelp[] =
    "Time from a request's arrival to its first generated token.";
inline constexpr char kInterTokenLatencySeconds[] = "moegraph_inter_token_latency_seconds";
inline constexpr char kInterTokenLatencyHelp[] =
    "Time between two consecutive generated tokens of one request.";
inline constexpr char kRequestDurationSeconds[] = "moegraph_request_duration_seconds";
inline constexpr char kRequestDurationHelp[] =
    "Time from a request's arrival to its final message (end to end).";
inline constexpr char kQueueTimeSeconds[] = "moegraph_queue_time_seconds";
inline constexpr char kQueueTimeHelp[] =
    "Time a request waited before it was given a sequence slot.";
inline constexpr char kStepDurationSeconds[] = "moegraph_step_duration_seconds";
inline constexpr char kStepDurationHelp[] = "Duration of one scheduler step, by execution mode.";
inline constexpr char kStepModeLabel[] = "mode";
inline constexpr char kStepModeEager[] = "eager";  // no graph replay (CPU, or graphs off)

// Load gauges.
inline constexpr char kRequestsRunning[] = "moegraph_requests_running";
inline constexpr char kRequestsRunningHelp[] = "Requests holding a sequence slot.";
inline constexpr char kRequestsWaiting[] = "moegraph_requests_waiting";
inline constexpr char kRequestsWaitingHelp[] = "Requests admitted and waiting for a slot.";
inline constexpr char kSlotsUsed[] = "moegraph_slots_used";
inline constexpr char kSlotsUsedHelp[] = "Sequence slots in use.";
// Not "moegraph_slots_total": a gauge must not end in _total (promtool refuses
// it, and queries would take it for a counter).
inline constexpr char kSlotsCapacity[] = "moegraph_slots_capacity";
inline constexpr char kSlotsCapacityHelp[] = "Sequence slots configured.";

// Token counters.
inline constexpr char kPromptTokensTotal[] = "moegraph_prompt_tokens_total";
inline constexpr char kPromptTokensHelp[] = "Prompt tokens of admitted requests.";
inline constexpr char kGeneratedTokensTotal[] = "moegraph_generated_tokens_total";
inline constexpr char kGeneratedTokensHelp[] = "Tokens generated.";

}  // namespace moegraph::metrics
