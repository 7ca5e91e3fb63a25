#!/usr/bin/env python3
"""A real Prometheus server scrapes moegraphd (the tiny model) after this test
ran Generate calls ending in each way: its query API must show exactly the
request counts by finish reason and the token counts the calls reported, the
latency histograms with one observation per request, and every histogram
bucket exactly as /metrics served it. Exits 77 (ctest: skipped) without
prometheus.
"""

import os
import shutil
import sys

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Daemon, collect, stubs  # noqa: E402
import prom_text  # noqa: E402
from prometheus_server import PrometheusServer  # noqa: E402

pb = stubs().generation_pb2
PROMPT = [5, 6, 7]
LONG = 4000  # long enough to still be running when Abort arrives


def request(max_tokens, **stopping):
    return pb.GenerateRequest(token_ids=pb.TokenIds(ids=PROMPT),
                              stopping=pb.StoppingParams(max_tokens=max_tokens, ignore_eos=True,
                                                         **stopping))


def run_requests(daemon):
    """One request per finish reason the test can cause (error needs a
    failing engine); returns their Final messages."""
    stub = daemon.generation()
    finals = []
    ids, _, final, _ = collect(stub.Generate(request(4), timeout=60))
    assert final.finish_reason == pb.FINISH_REASON_LENGTH, final
    finals.append(final)
    _, _, final, _ = collect(stub.Generate(request(3), timeout=60))
    assert final.finish_reason == pb.FINISH_REASON_LENGTH, final
    finals.append(final)
    _, _, final, _ = collect(stub.Generate(request(8, stop_token_ids=[ids[1]]), timeout=60))
    assert final.finish_reason == pb.FINISH_REASON_STOP, final
    finals.append(final)

    call = stub.Generate(pb.GenerateRequest(
        request_id="abort-me", token_ids=pb.TokenIds(ids=PROMPT),
        stopping=pb.StoppingParams(max_tokens=LONG, ignore_eos=True)), timeout=120)
    first = next(call)
    assert first.WhichOneof("kind") == "chunk", first
    assert stub.Abort(pb.AbortRequest(request_id="abort-me")).found
    _, _, final, _ = collect(call)
    assert final.finish_reason == pb.FINISH_REASON_ABORT, final
    finals.append(final)

    # Refused for its length (INVALID_ARGUMENT, counted as too_long).
    try:
        collect(stub.Generate(request(5000), timeout=60))
        raise AssertionError("a request beyond the context limit was accepted")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    return finals


def expectations(finals, instance, steps):
    """{promql: {frozenset(labels): value}} Prometheus must show."""
    by_reason = {"stop": 0, "length": 0, "abort": 0, "error": 0}
    names = {pb.FINISH_REASON_STOP: "stop", pb.FINISH_REASON_LENGTH: "length",
             pb.FINISH_REASON_ABORT: "abort"}
    for f in finals:
        by_reason[names[f.finish_reason]] += 1
    job = {("instance", instance), ("job", "moegraph")}
    none = frozenset()
    n = len(finals)
    return {
        'up{job="moegraph"}': {frozenset(job): 1},
        "moegraph_requests_total": {
            frozenset(job | {("finish_reason", r)}): float(v) for r, v in by_reason.items()},
        "sum(moegraph_prompt_tokens_total)": {none: sum(f.usage.prompt_tokens for f in finals)},
        "sum(moegraph_generated_tokens_total)":
            {none: sum(f.usage.completion_tokens for f in finals)},
        # One observation per request, of each end-to-end kind.
        "sum(moegraph_time_to_first_token_seconds_count)": {none: n},
        "sum(moegraph_request_duration_seconds_count)": {none: n},
        "sum(moegraph_queue_time_seconds_count)": {none: n},
        # Every token after a request's first is one inter-token interval.
        "sum(moegraph_inter_token_latency_seconds_count)":
            {none: sum(max(f.usage.completion_tokens - 1, 0) for f in finals)},
        # Eager steps only, in as many buckets (batch sizes) as they ran with.
        'count(sum by (mode) (moegraph_step_duration_seconds_count) > 0)': {none: 1},
        'sum by (mode) (moegraph_step_duration_seconds_count)':
            {frozenset({("mode", "eager")}): steps},
        # Every prompt token is prefilled; every generated token but each
        # request's last is fed back as a decode token.
        "sum(moegraph_prefill_tokens_total)": {none: sum(f.usage.prompt_tokens for f in finals)},
        "sum(moegraph_decode_tokens_total)":
            {none: sum(max(f.usage.completion_tokens - 1, 0) for f in finals)},
        "moegraph_requests_rejected_total": {
            frozenset(job | {("reason", r)}): float(r == "too_long")
            for r in ("queue_full", "too_long", "pool_exhausted", "draining", "duplicate_id")},
        # dsv4-tiny, 2 slots, context 4096: the default pool of 2 x 4096
        # tokens is 34 CSA pages of 256 tokens (+ as many indexer pages) and
        # 10 HCA pages of 1024; nothing is held once the requests are done.
        "sum(moegraph_state_pool_tokens_capacity)": {none: 34 * 256},
        "sum(moegraph_state_pool_pages_capacity)": {none: 34 + 10 + 34},
        "sum(moegraph_state_pool_tokens_reserved)": {none: 0},
        "sum(moegraph_state_pool_tokens_used)": {none: 0},
        "sum(moegraph_state_pool_pages_reserved)": {none: 0},
        "sum(moegraph_state_pool_pages_used)": {none: 0},
        "sum(moegraph_request_max_tokens)": {none: 4096},
        "sum(moegraph_slots_capacity)": {none: 2},
        "sum(moegraph_slots_used)": {none: 0},
        "sum(moegraph_requests_running)": {none: 0},
        "sum(moegraph_requests_waiting)": {none: 0},
    }


def bucket_expectations(scraped, instance):
    """Every histogram bucket as /metrics served it, as Prometheus must store it."""
    out = {}
    for (name, labels), value in scraped.items():
        if name.endswith("_bucket"):
            series = out.setdefault(name, {})
            series[labels | {("instance", instance), ("job", "moegraph")}] = value
    return out


def main():
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        print("SKIP: prometheus not found (scripts/install-deps.sh installs it)")
        return 77
    with Daemon(flags=["--slots=2", "--context_limit=4096"]) as daemon:
        finals = run_requests(daemon)
        print("requests:", ", ".join(
            f"{pb.FinishReason.Name(f.finish_reason)} ({f.usage.prompt_tokens} in, "
            f"{f.usage.completion_tokens} out)" for f in finals))
        scraped = prom_text.parse(daemon.metrics_text())
        steps = scraped[("moegraph_steps_total", frozenset())]
        assert steps > 0, steps
        expected = expectations(finals, daemon.metrics_address, steps)
        expected.update(bucket_expectations(scraped, daemon.metrics_address))
        with PrometheusServer([daemon.metrics_address], binary=prometheus) as server:
            missing = server.wait_for(expected)
            if missing:
                for promql, (want, got) in missing.items():
                    print(f"BAD {promql}: want {want}, got {got}")
                print(server.log())
                return 1
    print(f"prometheus saw all {len(expected)} expected series sets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
