#!/usr/bin/env python3
"""SIGTERM while streams run (fake engine, 10 ms steps): readiness turns
NOT_SERVING, new calls get UNAVAILABLE, requests that can finish within the
grace period finish, the rest end with finish reason ABORT, every stream gets
its final message, and moegraphd exits 0. SIGINT behaves the same."""

import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

from harness import Daemon, SERVICE, collect, stubs  # noqa: E402

pb = stubs().generation_pb2


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


class DrainTest(unittest.TestCase):
    def wait_admitted(self, daemon, running, waiting):
        """Waits until the requests have reached the server (a request that
        arrives after the signal rightly gets UNAVAILABLE)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = daemon.metrics_text()
            if (metric(text, "moegraph_requests_running") == running
                    and metric(text, "moegraph_requests_waiting") == waiting):
                return
            time.sleep(0.01)
        self.fail("requests did not arrive:\n" + daemon.metrics_text())

    def run_drain(self, sig):
        daemon = Daemon(fake_engine=True,
                        flags=["--slots=4", "--queue_size=8", "--fake-step-ms=10",
                               "--drain_grace_seconds=1.5"])
        daemon.start()
        try:
            stub = daemon.generation()
            # Two finish within the grace period (50 steps), two cannot (3000
            # steps), and two wait in the queue behind them.
            plan = [("short-0", 50), ("short-1", 50), ("long-0", 3000), ("long-1", 3000),
                    ("queued-0", 20), ("queued-1", 20)]
            results = {}
            errors = {}
            started = threading.Barrier(len(plan) + 1)

            def run(rid, n):
                call = stub.Generate(pb.GenerateRequest(
                    request_id=rid, token_ids=pb.TokenIds(ids=[5, 6, 7]),
                    stopping=pb.StoppingParams(max_tokens=n)))
                started.wait()
                try:
                    results[rid] = collect(call)
                except grpc.RpcError as e:
                    errors[rid] = e

            threads = [threading.Thread(target=run, args=p) for p in plan]
            for t in threads:
                t.start()
            started.wait()
            self.wait_admitted(daemon, running=4, waiting=2)
            daemon.signal(sig)

            # Readiness goes NOT_SERVING while the long ones still run; new
            # calls are refused with UNAVAILABLE.
            deadline = time.monotonic() + 1.0
            while daemon.health(SERVICE) != "NOT_SERVING" and time.monotonic() < deadline:
                time.sleep(0.02)
            self.assertEqual(daemon.health(SERVICE), "NOT_SERVING")
            with self.assertRaises(grpc.RpcError) as ctx:
                collect(stub.Generate(pb.GenerateRequest(
                    token_ids=pb.TokenIds(ids=[1]), stopping=pb.StoppingParams(max_tokens=2))))
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAVAILABLE)

            for t in threads:
                t.join(30)
            rc = daemon.wait(30)
        finally:
            rc = daemon.stop()
        logs = daemon.logs()
        self.assertEqual(rc, 0, logs)
        self.assertEqual(errors, {}, logs)
        self.assertEqual(set(results), {p[0] for p in plan})
        for rid, n in plan:
            ids, _, final, _ = results[rid]
            self.assertIsNotNone(final, rid)
            self.assertEqual(final.usage.completion_tokens, len(ids), rid)
            if rid.startswith("long"):
                self.assertEqual(final.finish_reason, pb.FINISH_REASON_ABORT, rid)
                self.assertLess(len(ids), n)
            else:
                self.assertEqual(final.finish_reason, pb.FINISH_REASON_LENGTH, rid)
                self.assertEqual(len(ids), n)
        self.assertIn("draining", logs)

    def test_sigterm(self):
        self.run_drain(signal.SIGTERM)

    def test_sigint(self):
        self.run_drain(signal.SIGINT)

    def test_sigterm_on_the_model(self):
        """The real dsv4-tiny: SIGTERM with a short grace while four long
        streams and two queued ones run; each gets a final message."""
        daemon = Daemon(flags=["--slots=4", "--drain_grace_seconds=0.2"])
        daemon.start(timeout=300)
        stub = daemon.generation()
        calls = [stub.Generate(pb.GenerateRequest(
            token_ids=pb.TokenIds(ids=[3, 4, 5, 6]), add_bos=False,
            stopping=pb.StoppingParams(max_tokens=4000, ignore_eos=True))) for _ in range(6)]
        self.wait_admitted(daemon, running=4, waiting=2)
        daemon.signal(signal.SIGTERM)
        finals = [collect(c)[2] for c in calls]
        self.assertEqual(daemon.wait(30), 0, daemon.logs())
        daemon.stop()
        for f in finals:
            self.assertIsNotNone(f)
            self.assertIn(f.finish_reason, (pb.FINISH_REASON_ABORT, pb.FINISH_REASON_LENGTH))
        self.assertIn(pb.FINISH_REASON_ABORT, [f.finish_reason for f in finals])

    def test_idle_exit_is_quick(self):
        daemon = Daemon(fake_engine=True)
        daemon.start()
        t = time.monotonic()
        self.assertEqual(daemon.stop(), 0)
        self.assertLess(time.monotonic() - t, 5)


if __name__ == "__main__":
    unittest.main(verbosity=2)
