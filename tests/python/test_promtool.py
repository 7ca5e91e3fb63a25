#!/usr/bin/env python3
"""`promtool check metrics` on a scrape of moegraphd (the tiny model) after a
Generate call: no lint problems in any family the daemon exports, the text
content type prometheus-cpp's Exposer sends, 404 off /metrics, and exactly
the Exposer's three exposer_* families beside moegraph_* ones (kept on
purpose: server/metrics/metrics.h). Exits 77 (ctest: skipped) without
promtool.
"""

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Daemon, collect, daemon_binary, free_port, stubs  # noqa: E402

# prometheus-cpp 1.0.1's handler sends no version parameter; Prometheus reads
# text/plain as the 0.0.4 text format.
CONTENT_TYPE = "text/plain; charset=utf-8"
EXPOSER_FAMILIES = ["exposer_request_latencies", "exposer_scrapes_total",
                    "exposer_transferred_bytes_total"]


def get(address, path):
    """(status, content type, body) of GET http://address/path."""
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), ""


def promtool_check(promtool, text):
    run = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                         text=True, timeout=60)
    return run.returncode, (run.stdout + run.stderr).strip()


def start_fails(metrics_address):
    """moegraphd's exit code and output when its metrics address is unusable."""
    run = subprocess.run([daemon_binary(), "--fake-engine", "--listen_address=127.0.0.1:%d"
                          % free_port(), "--metrics_address=" + metrics_address],
                         capture_output=True, text=True, timeout=60)
    return run.returncode, run.stdout + run.stderr


def check_bind_failures(taken):
    """A taken or IPv6 metrics address is a clear start-up error (exit 1, one
    line naming the address and the reason), not an escaping exception."""
    rc, out = start_fails(taken)
    want = f"metrics: cannot listen on {taken}: Address already in use"
    assert rc == 1 and want in out and "terminate" not in out, (rc, out)
    rc, out = start_fails("[::1]:%d" % free_port())
    assert rc == 1 and "IPv6 is not supported" in out and "terminate" not in out, (rc, out)
    print("bind failures: exit 1 with", repr(want))


def main():
    promtool = shutil.which("promtool")
    if promtool is None:
        print("SKIP: promtool not found (scripts/install-deps.sh installs prometheus)")
        return 77
    # promtool must flag a broken exposition, or a pass below proves nothing.
    rc, out = promtool_check(promtool, "# TYPE moegraph_slots_total gauge\nmoegraph_slots_total 8\n")
    assert rc != 0 and "_total" in out, f"promtool let a bad exposition pass: rc={rc} {out!r}"

    pb = stubs().generation_pb2
    with Daemon() as daemon:
        _, _, final, _ = collect(daemon.generation().Generate(pb.GenerateRequest(
            token_ids=pb.TokenIds(ids=[5, 6, 7]),
            stopping=pb.StoppingParams(max_tokens=4, ignore_eos=True)), timeout=60))
        assert final.finish_reason == pb.FINISH_REASON_LENGTH, final
        status, content_type, body = get(daemon.metrics_address, "/metrics")
        assert status == 200, status
        assert content_type == CONTENT_TYPE, content_type
        assert 'moegraph_requests_total{finish_reason="length"} 1\n' in body, body
        # civetweb matches handlers by path prefix: /metrics/x serves the
        # metrics too; anything else is 404.
        for path in ("/", "/metric", "/index.html"):
            status, _, _ = get(daemon.metrics_address, path)
            assert status == 404, (path, status)
        check_bind_failures(daemon.metrics_address)

    rc, out = promtool_check(promtool, body)
    families = sorted(line.split()[2] for line in body.splitlines() if line.startswith("# TYPE "))
    print(f"promtool check metrics: exit {rc}, output: {out!r}")
    print(f"{len(body.splitlines())} lines, {len(families)} families: {', '.join(families)}")
    if rc != 0 or out:
        print(body)
        return 1
    foreign = [f for f in families if not f.startswith("moegraph_")]
    if foreign != EXPOSER_FAMILIES:
        print(f"families other than moegraph_*: {foreign}, expected {EXPOSER_FAMILIES}")
        return 1
    for name in ("moegraph_requests_total", "moegraph_step_duration_seconds",
                 "moegraph_state_pool_tokens_capacity", "moegraph_requests_rejected_total",
                 "moegraph_prefill_tokens_total", "moegraph_decode_tokens_total"):
        if name not in families:
            print(f"{name} missing")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
