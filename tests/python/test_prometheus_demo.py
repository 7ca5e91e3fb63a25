#!/usr/bin/env python3
"""A real Prometheus server scrapes the exporter serving the daemon's metric
set (tests/metrics_demo); its query API must show the values this test set,
histograms included. Exits 77 (ctest: skipped) without prometheus.

usage: test_prometheus_demo.py PATH/TO/moegraph_metrics_demo

The stand-in until moegraphd is on main (test_prometheus.py scrapes the daemon);
delete it, tests/metrics_demo and metrics_demo.py then.
"""

import shutil
import sys

from metrics_demo import DemoExporter
from prometheus_server import PrometheusServer

TTFT = [0.1, 0.3, 0.7]
STEPS = [0.003, 0.003, 0.005, 0.02]


def drive(exporter):
    """Sets the values; returns {promql: {frozenset(labels): value}} to find."""
    reasons = {"stop": 3, "length": 2, "abort": 1}
    for reason, n in reasons.items():
        for _ in range(n):
            exporter.inc("moegraph_requests_total", 1, finish_reason=reason)
    for v in TTFT:
        exporter.observe("moegraph_time_to_first_token_seconds", v)
    for v in STEPS:
        exporter.observe("moegraph_step_duration_seconds", v, mode="eager")
    exporter.inc("moegraph_prompt_tokens_total", 17)
    exporter.inc("moegraph_generated_tokens_total", 42)
    exporter.set("moegraph_slots_capacity", 8)
    exporter.set("moegraph_slots_used", 2)
    exporter.set("moegraph_requests_running", 2)
    exporter.set("moegraph_requests_waiting", 1)
    none = frozenset()
    return {
        'up{job="moegraph"}': {frozenset({("instance", exporter.address), ("job", "moegraph")}): 1},
        "moegraph_requests_total": {
            frozenset({("finish_reason", r), ("instance", exporter.address),
                       ("job", "moegraph")}): float(reasons.get(r, 0))
            for r in ("stop", "length", "abort", "error")},
        "sum(moegraph_time_to_first_token_seconds_count)": {none: len(TTFT)},
        "sum(moegraph_time_to_first_token_seconds_sum)": {none: sum(TTFT)},
        'sum(moegraph_time_to_first_token_seconds_bucket{le="0.25"})': {none: 1},
        # Prometheus reads the buckets: the median of 0.1, 0.3, 0.7 lies in
        # (0.25, 0.5], interpolated to 0.25 + 0.25 * (1.5 - 1) / (2 - 1).
        "histogram_quantile(0.5, sum by (le) (moegraph_time_to_first_token_seconds_bucket))":
            {none: 0.375},
        'sum(moegraph_step_duration_seconds_count{mode="eager"})': {none: len(STEPS)},
        "sum(moegraph_prompt_tokens_total)": {none: 17},
        "sum(moegraph_generated_tokens_total)": {none: 42},
        "sum(moegraph_slots_capacity)": {none: 8},
        "sum(moegraph_slots_used)": {none: 2},
        "sum(moegraph_requests_running)": {none: 2},
        "sum(moegraph_requests_waiting)": {none: 1},
    }


def main():
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        print("SKIP: prometheus not found (scripts/install-deps.sh installs it)")
        return 77
    with DemoExporter(sys.argv[1]) as exporter:
        expected = drive(exporter)
        with PrometheusServer([exporter.address], binary=prometheus) as server:
            missing = server.wait_for(expected)
            if missing:
                for promql, (want, got) in missing.items():
                    print(f"BAD {promql}: want {want}, got {got}")
                print(server.log())
                return 1
    print(f"prometheus saw all {len(expected)} expected series")
    return 0


if __name__ == "__main__":
    sys.exit(main())
