#!/usr/bin/env python3
"""A real Prometheus, loaded with deploy/prometheus/recording_rules.yml,
scrapes moegraphd on the fake engine (150 ms steps, 16-token step budget)
while this test streams one request after another (20 prompt tokens, 30
generated): each request's first token comes after two prefill steps
(~0.3 s, the TTFT bucket (0.25, 0.5]), every later one a step later
(~0.15 s, the inter-token bucket (0.1, 0.25]) and no request waits (queue
bucket (0, 0.005]), so the recorded quantiles have exact values
(histogram_quantile interpolates inside the bucket); tokens/s must match the
rate the client itself received, the error ratio is 0, and the reserved
share of the state pool is one request's 50 tokens of the fake's 8 x 4096.
The rules' windows are shortened to 10 s so that a few seconds of traffic
fill them (the expressions are the rules' own). Exits 77 without prometheus.
"""

import os
import re
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import SOURCE_DIR, Daemon, stubs  # noqa: E402
from prometheus_server import PrometheusServer  # noqa: E402

RULES = os.path.join(SOURCE_DIR, "deploy", "prometheus", "recording_rules.yml")
WINDOW = 10  # seconds
STEP = 0.150
PROMPT, MAX_TOKENS = list(range(10, 30)), 30

pb = stubs().generation_pb2


class Traffic(threading.Thread):
    """Sequential streaming requests until stopped; the arrival time of every token."""

    def __init__(self, stub):
        super().__init__(daemon=True)
        self.stub, self.stop, self.token_times, self.requests, self.error = stub, False, [], 0, None

    def run(self):
        try:
            while not self.stop:
                for msg in self.stub.Generate(pb.GenerateRequest(
                        token_ids=pb.TokenIds(ids=PROMPT), add_bos=False,
                        stopping=pb.StoppingParams(max_tokens=MAX_TOKENS, ignore_eos=True)),
                        timeout=60):
                    if msg.WhichOneof("kind") == "chunk":
                        now = time.time()  # wall clock, as Prometheus's timestamps
                        self.token_times += [now] * len(msg.chunk.token_ids)
                    elif msg.final.finish_reason != pb.FINISH_REASON_LENGTH:
                        raise AssertionError(f"finished with {msg.final}")
                self.requests += 1
        except Exception as e:  # reported by main
            self.error = e

    def rate(self, end, seconds):
        """Tokens per second received in (end - seconds, end]."""
        return sum(1 for t in self.token_times if end - seconds < t <= end) / seconds


def quantile(lo, hi, q):
    """histogram_quantile's value when every observation is in (lo, hi]."""
    return lo + (hi - lo) * q


def main():
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        print("SKIP: prometheus not found (scripts/install-deps.sh installs it)")
        return 77
    with open(RULES) as f:
        rules = re.sub(r"\[(1m|5m)\]", f"[{WINDOW}s]", f.read())
    flags = [f"--fake-step-ms={STEP * 1000:.0f}", "--max_step_tokens=16", "--slots=8"]
    with Daemon(fake_engine=True, flags=flags) as daemon, \
            PrometheusServer([daemon.metrics_address], binary=prometheus,
                             rule_files={"recording_rules.yml": rules}) as server:
        job = frozenset({("job", "moegraph")})
        # Prometheus scrapes its first targets some seconds after start: the
        # traffic begins once it has, so that the counters' zeros are stored.
        up = server.wait_for({'up{job="moegraph"}':
                              {job | {("instance", daemon.metrics_address)}: 1}}, timeout=30)
        if up:
            print("FAIL: Prometheus never scraped the daemon:", up, server.log())
            return 1
        traffic = Traffic(daemon.generation())
        start = time.monotonic()
        traffic.start()
        time.sleep(WINDOW + 2)  # the windows hold only traffic
        expected = {
            "job:moegraph_time_to_first_token_seconds:p50_1m": {job: quantile(0.25, 0.5, 0.5)},
            "job:moegraph_time_to_first_token_seconds:p99_1m": {job: quantile(0.25, 0.5, 0.99)},
            "job:moegraph_inter_token_latency_seconds:p50_1m": {job: quantile(0.1, 0.25, 0.5)},
            "job:moegraph_inter_token_latency_seconds:p99_1m": {job: quantile(0.1, 0.25, 0.99)},
            "job:moegraph_queue_time_seconds:p99_1m": {job: quantile(0, 0.005, 0.99)},
            "job:moegraph_request_errors:ratio_5m": {job: 0.0},
            "job:moegraph_state_pool_tokens_reserved:ratio":
                {job: (len(PROMPT) + MAX_TOKENS) / (8 * 4096)},
        }
        missing = server.wait_for(expected, timeout=8)
        # Throughput: what the client saw in the window of the recorded sample
        # (rule evaluation may lag behind on a busy machine).
        recorded = server.query("job:moegraph_generated_tokens:rate1m")
        evaluated_at = server.query("timestamp(job:moegraph_generated_tokens:rate1m)").get(job, 0)
        client = traffic.rate(evaluated_at, WINDOW)
        queue_mean = server.query("job:moegraph_queue_time_seconds:mean_1m")
        traffic.stop = True
        traffic.join(30)
        if traffic.error is not None:
            raise traffic.error
        print(f"{traffic.requests} requests, {len(traffic.token_times)} tokens in "
              f"{time.monotonic() - start:.1f} s; client {client:.2f} tokens/s, "
              f"recorded {recorded}; queue mean {queue_mean}")
        errors = [f"{q}: want {w}, got {g}" for q, (w, g) in missing.items()]
        got = recorded.get(job)
        # One token per 150 ms step at most; the client's count over the same
        # 10 s is within a token or two of Prometheus's extrapolated rate.
        if got is None or not (abs(got - client) <= 0.2 * client and got <= 1.1 / STEP):
            errors.append(f"tokens/s: recorded {got}, client saw {client:.2f}")
        q = queue_mean.get(job)
        if q is None or not 0 <= q < 0.005:
            errors.append(f"queue time mean: {q}, want below 5 ms (no request waited)")
        if errors:
            for e in errors:
                print("FAIL:", e)
            print(server.log())
            return 1
    print("recording rules evaluated to the expected values")
    return 0


if __name__ == "__main__":
    sys.exit(main())
