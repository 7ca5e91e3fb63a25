#!/usr/bin/env python3
"""`promtool check metrics` on a scrape of the real exporter serving the
daemon's metric set (tests/metrics_demo): no lint problems, the 0.0.4 content
type, 404 off /metrics. Exits 77 (ctest: skipped) without promtool.

usage: test_promtool_demo.py PATH/TO/moegraph_metrics_demo

The stand-in until moegraphd is on main (test_promtool.py scrapes the daemon);
delete it, tests/metrics_demo and metrics_demo.py then.
"""

import shutil
import subprocess
import sys

from metrics_demo import DemoExporter, scrape

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def promtool_check(promtool, text):
    run = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                         text=True, timeout=60)
    return run.returncode, (run.stdout + run.stderr).strip()


def main():
    promtool = shutil.which("promtool")
    if promtool is None:
        print("SKIP: promtool not found (scripts/install-deps.sh installs prometheus)")
        return 77
    # promtool must flag a broken exposition, or a pass below proves nothing.
    rc, out = promtool_check(promtool, "# TYPE moegraph_slots_total gauge\nmoegraph_slots_total 8\n")
    assert rc != 0 and "_total" in out, f"promtool let a bad exposition pass: rc={rc} {out!r}"

    with DemoExporter(sys.argv[1]) as exporter:
        exporter.inc("moegraph_requests_total", 3, finish_reason="stop")
        exporter.inc("moegraph_requests_total", 1, finish_reason="length")
        exporter.observe("moegraph_time_to_first_token_seconds", 0.12)
        exporter.observe("moegraph_inter_token_latency_seconds", 0.004)
        exporter.observe("moegraph_request_duration_seconds", 1.7)
        exporter.observe("moegraph_queue_time_seconds", 0.0)
        exporter.observe("moegraph_step_duration_seconds", 0.003, mode="eager")
        exporter.set("moegraph_slots_capacity", 8)
        exporter.set("moegraph_slots_used", 2)
        exporter.inc("moegraph_prompt_tokens_total", 17)
        exporter.inc("moegraph_generated_tokens_total", 40)

        status, content_type, body = scrape(exporter.address)
        assert status == 200, status
        assert content_type == CONTENT_TYPE, content_type
        assert 'moegraph_requests_total{finish_reason="stop"} 3\n' in body, body
        for path in ("/", "/metric", "/metrics/extra"):
            status, _, _ = scrape(exporter.address, path)
            assert status == 404, (path, status)

    rc, out = promtool_check(promtool, body)
    print(f"promtool check metrics: exit {rc}, output: {out!r}")
    print(f"({len(body.splitlines())} lines scraped, "
          f"{body.count('# TYPE ')} families)")
    if rc != 0 or out:
        print(body)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
