#!/usr/bin/env python3
"""deploy/grafana/moegraph-dashboard.json: every panel query (and the job
variable's) is valid PromQL, checked by promtool as a recording rule each,
and names only series that exist: metrics a running moegraphd (the tiny
model, after a Generate) serves on /metrics, names recorded by
deploy/prometheus/recording_rules.yml, and `up`. Two families appear only on
a GPU (device memory, graph replays); they must be absent from the CPU
daemon's scrape and be named in server/metrics/metric_names.h. Exits 77
without promtool.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import SOURCE_DIR, Daemon, collect, stubs  # noqa: E402
import prom_text  # noqa: E402

DASHBOARD = os.path.join(SOURCE_DIR, "deploy", "grafana", "moegraph-dashboard.json")
RECORDING = os.path.join(SOURCE_DIR, "deploy", "prometheus", "recording_rules.yml")
GPU_ONLY = {"moegraph_gpu_memory_bytes", "moegraph_graph_replays_total"}
NAME = re.compile(r"\b((?:job:)?moegraph_[A-Za-z0-9_:]*|up)\b(?!\s*\()")


def queries(dashboard):
    """(where, PromQL) of every panel target and query variable, with the
    dashboard's variables given values."""
    out = []
    for panel in dashboard["panels"]:
        for t in panel["targets"]:
            out.append((f"panel {panel['id']} '{panel['title']}' {t['refId']}", t["expr"]))
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.+), \w+\)", var["query"]["query"])
            out.append((f"variable {var['name']}", m.group(1)))
    return [(where, expr.replace("$job", "moegraph")) for where, expr in out]


def main():
    promtool = shutil.which("promtool")
    if promtool is None:
        print("SKIP: promtool not found")
        return 77
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    qs = queries(dashboard)
    errors = []

    # 1. PromQL: all queries as rules of one group.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "dashboard_rules.yml")
        with open(path, "w") as f:
            f.write("groups:\n  - name: dashboard\n    rules:\n")
            for i, (_, expr) in enumerate(qs):
                f.write(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(expr)}\n")
        run = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True,
                             timeout=60)
        print((run.stdout + run.stderr).strip())
        if run.returncode != 0 or f"SUCCESS: {len(qs)} rules found" not in run.stdout:
            errors.append("promtool check rules refused a dashboard query")

    # 2. Names: what the daemon serves, what the rules record, up.
    with open(RECORDING) as f:
        recorded = set(re.findall(r"record: (\S+)", f.read()))
    with open(os.path.join(SOURCE_DIR, "server", "metrics", "metric_names.h")) as f:
        declared = set(re.findall(r'"(moegraph_\w+)"', f.read()))
    pb = stubs().generation_pb2
    with Daemon() as daemon:
        collect(daemon.generation().Generate(pb.GenerateRequest(
            token_ids=pb.TokenIds(ids=[5, 6, 7]),
            stopping=pb.StoppingParams(max_tokens=3, ignore_eos=True)), timeout=60))
        served = {name for name, _ in prom_text.parse(daemon.metrics_text())}
    for name in GPU_ONLY:
        if name in served or not any(s.startswith(name) for s in served | declared):
            errors.append(f"{name}: expected only on a GPU and declared in metric_names.h")
    known = served | recorded | GPU_ONLY | {"up"}
    used = set()
    for where, expr in qs:
        for name in NAME.findall(expr):
            used.add(name)
            if name not in known:
                errors.append(f"{where}: {name} is neither served, recorded nor up")
    print(f"{len(dashboard['panels'])} panels, {len(qs)} queries, {len(used)} names: "
          f"{sorted(used)}")
    # Every recorded rule is on the dashboard (else the rule or the panel is missing).
    for name in sorted(recorded - used):
        errors.append(f"recording rule {name} is on no panel")
    for e in errors:
        print("FAIL:", e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
