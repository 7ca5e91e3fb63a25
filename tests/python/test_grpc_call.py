#!/usr/bin/env python3
"""scripts/grpc_call.py (the README's grpcurl-style example) against the
real tiny model: it must discover the API through server reflection alone
and return what the typed stubs return."""

import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import SOURCE_DIR, Daemon, golden  # noqa: E402

TOOL = os.path.join(SOURCE_DIR, "scripts", "grpc_call.py")


class GrpcCallTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon()
        cls.daemon.start()

    @classmethod
    def tearDownClass(cls):
        assert cls.daemon.stop() == 0

    def tool(self, *args):
        return subprocess.run([sys.executable, TOOL, "--server", self.daemon.address, *args],
                              capture_output=True, text=True, timeout=120)

    def test_list_and_describe(self):
        r = self.tool("list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("moegraph.v1.Generation", r.stdout.split())
        self.assertIn("grpc.health.v1.Health", r.stdout.split())
        r = self.tool("describe", "moegraph.v1.Generation")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("rpc Generate(moegraph.v1.GenerateRequest) returns "
                      "(stream moegraph.v1.GenerateResponse)", r.stdout)

    def test_generate_golden_through_reflection(self):
        a = golden()["prompts"]["a"]
        request = {"tokenIds": {"ids": a["prompt_ids"]}, "addBos": False,
                   "sampling": {"temperature": 0},
                   "stopping": {"maxTokens": 10, "ignoreEos": True}}
        r = self.tool("call", "moegraph.v1.Generation/Generate", json.dumps(request))
        self.assertEqual(r.returncode, 0, r.stderr)
        msgs = [json.loads(line) for line in r.stdout.splitlines()]
        ids = [t for m in msgs if "chunk" in m for t in m["chunk"].get("tokenIds", [])]
        self.assertEqual(ids, a["decode_ids"][:10])
        self.assertEqual(msgs[-1]["final"]["finishReason"], "FINISH_REASON_LENGTH")

    def test_errors_are_reported(self):
        r = self.tool("call", "moegraph.v1.Generation/Generate", '{"text": ""}')
        self.assertEqual(r.returncode, 1)
        self.assertIn("INVALID_ARGUMENT", r.stderr)
        r = self.tool("call", "moegraph.v1.Generation/Nope", "{}")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("has no method Nope", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
