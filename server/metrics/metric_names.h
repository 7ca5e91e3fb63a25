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
inline constexpr char kStepDurationHelp[] =
    "Duration of one scheduler step, by execution mode and batch bucket.";
inline constexpr char kStepModeLabel[] = "mode";
inline constexpr char kStepModeEager[] = "eager";  // no graph replay (CPU, or graphs off)
// The graph's batch bucket; eager steps (no graph) use their number of sequences.
inline constexpr char kStepBucketLabel[] = "bucket";

// Steps replayed from captured CUDA graphs, by graph mode ("full": one graph
// of the whole decode step; "piecewise": the pieces between the eager ops,
// counted once per step) and batch bucket. Eager steps are not counted.
inline constexpr char kGraphReplaysTotal[] = "moegraph_graph_replays_total";
inline constexpr char kGraphReplaysHelp[] =
    "Steps replayed from captured CUDA graphs, by graph mode and batch bucket.";

// Device memory of each GPU the engine runs on (bytes; absent on the CPU).
inline constexpr char kGpuMemoryBytes[] = "moegraph_gpu_memory_bytes";
inline constexpr char kGpuMemoryHelp[] =
    "GPU memory in bytes, by device and kind (used: by every process on the device; total).";
inline constexpr char kDeviceLabel[] = "device";  // the backend's name, "cuda:0"
inline constexpr char kMemoryKindLabel[] = "kind";
inline constexpr char kMemoryUsed[] = "used";
inline constexpr char kMemoryTotal[] = "total";

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
inline constexpr char kPrefillTokensTotal[] = "moegraph_prefill_tokens_total";
inline constexpr char kPrefillTokensHelp[] =
    "Prompt tokens run through the model (prefill chunks).";
inline constexpr char kDecodeTokensTotal[] = "moegraph_decode_tokens_total";
inline constexpr char kDecodeTokensHelp[] =
    "Tokens run through the model as decode steps (one per running sequence and step).";

// Steps and where their time goes.
inline constexpr char kStepsTotal[] = "moegraph_steps_total";
inline constexpr char kStepsHelp[] = "Scheduler steps run.";
inline constexpr char kEngineStepSecondsTotal[] = "moegraph_engine_step_seconds_total";
inline constexpr char kEngineStepSecondsHelp[] = "Time spent inside the engine's forward steps.";
inline constexpr char kSchedulerOverheadSecondsTotal[] =
    "moegraph_scheduler_overhead_seconds_total";
inline constexpr char kSchedulerOverheadSecondsHelp[] =
    "Scheduler step time outside the engine (planning, sampling, detokenizing, handing tokens "
    "to the streams).";

inline constexpr char kStepsAheadTotal[] = "moegraph_steps_launched_ahead_total";
inline constexpr char kStepsAheadHelp[] =
    "Steps launched before the previous step's sampled ids reached the host (pipelined "
    "engines).";
inline constexpr char kDroppedTokensTotal[] = "moegraph_dropped_tokens_total";
inline constexpr char kDroppedTokensHelp[] =
    "Tokens computed by a step launched ahead for sequences that had ended by then "
    "(at most one a stopped sequence), and dropped.";

// Admission refusals by reason.
inline constexpr char kRequestsRejectedTotal[] = "moegraph_requests_rejected_total";
inline constexpr char kRequestsRejectedHelp[] = "Requests refused at admission, by reason.";
inline constexpr char kRejectReasonLabel[] = "reason";
inline constexpr char kRejectQueueFull[] = "queue_full";  // RESOURCE_EXHAUSTED
inline constexpr char kRejectTooLong[] = "too_long";      // beyond the context limit
inline constexpr char kRejectPoolExhausted[] =
    "pool_exhausted";                                         // the state pool can never hold it
inline constexpr char kRejectDraining[] = "draining";         // UNAVAILABLE while draining
inline constexpr char kRejectDuplicateId[] = "duplicate_id";  // ALREADY_EXISTS

// The state pool (compressed attention state, in pages allocated on demand).
// "reserved" is what admission promised to running requests (prompt +
// max_tokens each), "used" what they hold now.
inline constexpr char kStatePoolTokensCapacity[] = "moegraph_state_pool_tokens_capacity";
inline constexpr char kStatePoolTokensCapacityHelp[] =
    "Tokens of sequence state the state pool holds over all slots.";
inline constexpr char kStatePoolTokensReserved[] = "moegraph_state_pool_tokens_reserved";
inline constexpr char kStatePoolTokensReservedHelp[] =
    "State pool tokens reserved by running requests (prompt + max_tokens each).";
inline constexpr char kStatePoolTokensUsed[] = "moegraph_state_pool_tokens_used";
inline constexpr char kStatePoolTokensUsedHelp[] =
    "Tokens the running requests hold in the state pool now.";
inline constexpr char kStatePoolPagesCapacity[] = "moegraph_state_pool_pages_capacity";
inline constexpr char kStatePoolPagesCapacityHelp[] =
    "Entry pages of the state pool, over every kind of compressed entry.";
inline constexpr char kStatePoolPagesReserved[] = "moegraph_state_pool_pages_reserved";
inline constexpr char kStatePoolPagesReservedHelp[] =
    "State pool pages reserved by running requests.";
inline constexpr char kStatePoolPagesUsed[] = "moegraph_state_pool_pages_used";
inline constexpr char kStatePoolPagesUsedHelp[] = "State pool pages holding entries now.";
inline constexpr char kRequestMaxTokens[] = "moegraph_request_max_tokens";
inline constexpr char kRequestMaxTokensHelp[] =
    "Most prompt + output tokens one request can get (the context limit, or less when the "
    "state pool holds less for one sequence).";

}  // namespace moegraph::metrics
