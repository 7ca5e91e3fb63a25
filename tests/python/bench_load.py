#!/usr/bin/env python3
"""Load benchmark for moegraphd: for each concurrency level, starts a daemon
(harness.Daemon; --slots = the level), keeps that many Generate streams busy
with the golden prompts of dsv4-tiny (greedy, ignore_eos, fixed max_tokens),
and reports requests/s, generated tokens/s, client-side inter-token latency
(p50/p99) and TTFT, plus the server's own time per token outside the model
(scheduler step time minus Engine::Step time, from the daemon's exit summary).

    /usr/bin/python3 tests/python/bench_load.py                 # 1 and 32 streams
    /usr/bin/python3 tests/python/bench_load.py --concurrency 1 8 32 --requests 128
    /usr/bin/python3 tests/python/bench_load.py --fake-engine    # the server alone
    /usr/bin/python3 tests/python/bench_load.py --fake-engine --fake-step-ms 2 [--pipelined]
        # steps that take 2 ms on the fake engine's modelled device, one at a
        # time or pipelined (step N+1 launched before step N's ids are back)
"""

import argparse
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Daemon, golden, stubs  # noqa: E402

pb = stubs().generation_pb2


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def scrape(daemon):
    """{sample name with labels: value} from /metrics, or {} without an exporter."""
    try:
        text = daemon.metrics_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def histogram_quantile(before, after, name, q):
    """Prometheus-style linear interpolation within the bucket of quantile q,
    over the observations between two scrapes."""
    buckets = []
    for key, value in after.items():
        if key.startswith(name + "_bucket{") and 'le="' in key:
            le = key.split('le="')[1].split('"')[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets.append((bound, value - before.get(key, 0.0)))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    rank = q * buckets[-1][1]
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return prev_bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / max(
                count - prev_count, 1e-12)
        prev_bound, prev_count = bound, count
    return float("nan")


def run_level(args, concurrency):
    prompts = [p["prompt_ids"] for p in golden()["prompts"].values()]
    flags = ["--slots=%d" % max(concurrency, 1), "--queue_size=%d" % (2 * args.requests),
             "--max_step_tokens=%d" % args.max_step_tokens]
    if args.fake_step_ms > 0:
        flags.append("--fake-step-ms=%g" % args.fake_step_ms)
    if args.pipelined:
        flags.append("--fake-pipelined")
    daemon = Daemon(fake_engine=args.fake_engine, flags=flags, log_level="info")
    daemon.start(timeout=300)
    stub = daemon.generation()

    def one(i, record):
        req = pb.GenerateRequest(
            token_ids=pb.TokenIds(ids=prompts[i % len(prompts)]), add_bos=False,
            stopping=pb.StoppingParams(max_tokens=args.max_tokens, ignore_eos=True))
        start = time.perf_counter()
        arrivals = []
        for msg in stub.Generate(req, timeout=600):
            if msg.WhichOneof("kind") == "chunk":
                now = time.perf_counter()
                arrivals.extend([now] * len(msg.chunk.token_ids))
        if record is not None:
            record.append((start, arrivals))

    # Warm up (connections, first steps), not measured.
    for i in range(min(concurrency, 4)):
        one(i, None)

    records = []
    next_request = [0]
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next_request[0]
                if i >= args.requests:
                    return
                next_request[0] += 1
            one(i, records)

    before = scrape(daemon)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    after = scrape(daemon)
    daemon.stop()
    logs = daemon.logs()

    tokens = sum(len(a) for _, a in records)
    itl, ttft = [], []
    for start, arrivals in records:
        if arrivals:
            ttft.append(arrivals[0] - start)
        itl.extend(b - a for a, b in zip(arrivals, arrivals[1:]))
    m = re.findall(r"scheduler: (\d+) steps, (\d+) tokens sampled, (\d+) prompt tokens; "
                   r"step ([\d.]+) s, engine ([\d.]+) s, server overhead ([\d.]+) us/token", logs)
    steps, sampled, _, step_s, engine_s, overhead_us = m[-1] if m else (0,) * 6
    server = {}
    if after:
        def delta(key):
            return after.get(key, 0.0) - before.get(key, 0.0)

        generated = max(delta("moegraph_generated_tokens_total"), 1)
        server = {
            # The measured phase only (the exit summary includes the warm-up).
            "server_us_per_token_measured":
                1e6 * delta("moegraph_scheduler_overhead_seconds_total") / generated,
            "engine_us_per_token_measured":
                1e6 * delta("moegraph_engine_step_seconds_total") / generated,
            "server_itl_p50_ms": 1e3 * histogram_quantile(
                before, after, "moegraph_inter_token_latency_seconds", 0.5),
            "server_itl_p99_ms": 1e3 * histogram_quantile(
                before, after, "moegraph_inter_token_latency_seconds", 0.99),
        }
    return {
        "concurrency": concurrency,
        "requests": len(records),
        "elapsed_s": elapsed,
        "requests_per_s": len(records) / elapsed,
        "tokens_per_s": tokens / elapsed,
        "itl_p50_ms": 1e3 * percentile(itl, 50),
        "itl_p99_ms": 1e3 * percentile(itl, 99),
        "ttft_p50_ms": 1e3 * percentile(ttft, 50),
        "ttft_p99_ms": 1e3 * percentile(ttft, 99),
        "steps": int(steps),
        "engine_ms_per_step": 1e3 * float(engine_s) / max(int(steps), 1),
        "step_ms_per_step": 1e3 * float(step_s) / max(int(steps), 1),
        "server_us_per_token": float(overhead_us),
        "mean_batch": int(sampled) / max(int(steps), 1),
        **server,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--requests", type=int, default=64, help="requests per level")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--max-step-tokens", type=int, default=256)
    ap.add_argument("--fake-step-ms", type=float, default=0,
                    help="with --fake-engine: each step's modelled device time")
    ap.add_argument("--pipelined", action="store_true",
                    help="with --fake-engine: pipeline the steps (--fake-pipelined)")
    ap.add_argument("--fake-engine", action="store_true",
                    help="the deterministic stand-in engine: measures the server alone")
    args = ap.parse_args()
    print("engine: %s, %d requests per level, %d tokens each (greedy, ignore_eos)"
          % ("fake" if args.fake_engine else "dsv4-tiny (cpu)", args.requests, args.max_tokens))
    header = ("streams", "req/s", "tok/s", "ITL p50 ms", "ITL p99 ms", "TTFT p50 ms",
              "step ms", "engine ms", "batch", "server us/tok")
    print("%7s %8s %9s %10s %10s %11s %8s %9s %6s %13s" % header)
    results = []
    for c in args.concurrency:
        r = run_level(args, c)
        results.append(r)
        print("%7d %8.1f %9.1f %10.3f %10.3f %11.2f %8.3f %9.3f %6.1f %13.1f" % (
            r["concurrency"], r["requests_per_s"], r["tokens_per_s"], r["itl_p50_ms"],
            r["itl_p99_ms"], r["ttft_p50_ms"], r["step_ms_per_step"], r["engine_ms_per_step"],
            r["mean_batch"], r["server_us_per_token"]))
        sys.stdout.flush()
    if any("server_itl_p50_ms" in r for r in results):
        print("\nfrom /metrics over the measured phase (ITL quantiles interpolated within the "
              "histogram's buckets, the first of which ends at 0.1 ms):")
        print("%7s %16s %16s %15s %15s" % ("streams", "server ITL p50 ms", "server ITL p99 ms",
                                           "engine us/tok", "server us/tok"))
        for r in results:
            if "server_itl_p50_ms" in r:
                print("%7d %16.3f %16.3f %15.1f %15.1f" % (
                    r["concurrency"], r["server_itl_p50_ms"], r["server_itl_p99_ms"],
                    r["engine_us_per_token_measured"], r["server_us_per_token_measured"]))


if __name__ == "__main__":
    main()
