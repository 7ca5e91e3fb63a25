#!/usr/bin/env python3
"""While the model loads, liveness ("") is SERVING, readiness
(moegraph.v1.Generation) is NOT_SERVING and Generate answers UNAVAILABLE;
once loaded, readiness turns SERVING and requests run. The fake engine's
--fake-load-ms stretches the load (the tiny model loads in milliseconds).
A second daemon on a port already served refuses to start, naming why."""

import os
import subprocess
import sys
import time
import unittest

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import SERVICE, Daemon, collect, daemon_binary, free_port, stubs  # noqa: E402

pb = stubs().generation_pb2


class LoadingTest(unittest.TestCase):
    def test_not_serving_while_loading(self):
        d = Daemon(fake_engine=True, flags=["--fake-load-ms=4000"])
        d._log = open(d.log_path, "wb")
        d.proc = subprocess.Popen(d.args, stdout=d._log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while d.health("", timeout=1.0) != "SERVING":
                self.assertIsNone(d.proc.poll(), d.logs())
                self.assertLess(time.monotonic(), deadline, "no liveness: " + d.logs())
                time.sleep(0.05)
            # Loading: the process is alive but not ready.
            self.assertEqual(d.health(SERVICE), "NOT_SERVING")
            req = pb.GenerateRequest(token_ids=pb.TokenIds(ids=[3, 4]))
            req.stopping.max_tokens = 2
            with self.assertRaises(grpc.RpcError) as ctx:
                collect(d.generation().Generate(req, timeout=10))
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAVAILABLE)
            # Loaded: ready, and the same request now runs.
            d.wait_ready(timeout=30)
            ids, _, final, _ = collect(d.generation().Generate(req, timeout=10))
            self.assertEqual(len(ids), 2)
            self.assertEqual(final.finish_reason, pb.FINISH_REASON_LENGTH)
        finally:
            self.assertEqual(d.stop(), 0)

    def test_second_daemon_on_a_taken_port_refuses_to_start(self):
        # gRPC's default SO_REUSEPORT let a second daemon bind the same port
        # and silently take half the connections.
        with Daemon(fake_engine=True) as first:
            run = subprocess.run([daemon_binary(), "--fake-engine",
                                  "--listen_address=" + first.address,
                                  "--metrics_address=127.0.0.1:%d" % free_port()],
                                 capture_output=True, text=True, timeout=60)
            out = run.stdout + run.stderr
            self.assertEqual(run.returncode, 1, out)
            self.assertIn("cannot listen on %s: Address already in use" % first.address, out)
            # The first daemon still serves every call.
            req = pb.GenerateRequest(token_ids=pb.TokenIds(ids=[3, 4]))
            req.stopping.max_tokens = 2
            for _ in range(8):
                ids, _, _, _ = collect(first.generation().Generate(req, timeout=10))
                self.assertEqual(len(ids), 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
