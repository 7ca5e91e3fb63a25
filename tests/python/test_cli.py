#!/usr/bin/env python3
"""The client subcommands of `moegraph` against a running moegraphd (fake
engine): health, info, generate (token ids; text once the daemon has a
tokenizer), and their exit codes."""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import BUILD_DIR, Daemon, collect, stubs  # noqa: E402

CLI = os.environ.get("MOEGRAPH_CLI", os.path.join(BUILD_DIR, "moegraph"))
pb = stubs().generation_pb2


class CliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon(fake_engine=True, flags=["--slots=2"])
        cls.daemon.start()

    @classmethod
    def tearDownClass(cls):
        assert cls.daemon.stop() == 0

    def cli(self, *args, env=None):
        return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60, env=env)

    def test_health(self):
        r = self.cli("health", "--server", self.daemon.address)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("liveness: SERVING", r.stdout)
        self.assertIn("readiness moegraph.v1.Generation: SERVING", r.stdout)
        r = self.cli("health", "--server", self.daemon.address, "--service", "nope")
        self.assertEqual(r.returncode, 1)
        self.assertIn("NOT_FOUND", r.stdout)

    def test_health_unreachable(self):
        r = self.cli("health", "--server", "127.0.0.1:1", "--timeout", "0.5")
        self.assertEqual(r.returncode, 1)
        self.assertIn("UNAVAILABLE", r.stdout + r.stderr)

    def test_info(self):
        env = dict(os.environ, MOEGRAPH_SERVER=self.daemon.address)
        r = self.cli("info", env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("vocabulary:      320 tokens", r.stdout)
        self.assertIn("slots:           2", r.stdout)

    def test_generate_ids(self):
        r = self.cli("generate", "--ids", "5,6,7", "--no-bos", "--max-tokens", "6", "--show-ids",
                     "--server", self.daemon.address)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("finish length", r.stderr)
        self.assertIn("3 prompt + 6 generated tokens", r.stderr)
        ids, _, _, _ = collect(self.daemon.generation().Generate(pb.GenerateRequest(
            token_ids=pb.TokenIds(ids=[5, 6, 7]), add_bos=False,
            stopping=pb.StoppingParams(max_tokens=6))))
        self.assertIn("".join("[%d]" % i for i in ids), r.stderr)

    def test_generate_text(self):
        r = self.cli("generate", "Hello", "world", "--max-tokens", "5", "--ignore-eos",
                     "--server", self.daemon.address)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("finish length", r.stderr)
        # "Hello world" with the tokenizer's BOS.
        tokenized = self.daemon.generation().Tokenize(pb.TokenizeRequest(text="Hello world"))
        self.assertIn("%d prompt + 5 generated tokens" % len(tokenized.token_ids), r.stderr)
        _, text, _, _ = collect(self.daemon.generation().Generate(pb.GenerateRequest(
            text="Hello world", stopping=pb.StoppingParams(max_tokens=5, ignore_eos=True))))
        self.assertEqual(r.stdout.rstrip("\n"), text.rstrip("\n"))

    def test_generate_sampled_seed_is_reproducible(self):
        args = ("generate", "--ids", "5,6,7", "--max-tokens", "8", "--temperature", "0.9",
                "--top-p", "0.9", "--seed", "42", "--show-ids", "--server", self.daemon.address)
        a, b = self.cli(*args), self.cli(*args)
        self.assertEqual(a.returncode, 0, a.stderr)
        strip = lambda s: s.split("[req-")[0]  # noqa: E731 (the request ids differ)
        self.assertEqual(strip(a.stderr), strip(b.stderr))

    def test_generate_bad_argument(self):
        r = self.cli("generate", "--ids", "5", "--top-p", "1.5", "--server", self.daemon.address)
        self.assertEqual(r.returncode, 1)
        self.assertIn("INVALID_ARGUMENT", r.stderr)
        self.assertIn("sampling.top_p", r.stderr)
        r = self.cli("generate", "--bogus")
        self.assertEqual(r.returncode, 2)

    def test_help(self):
        for cmd in ("generate", "health", "info"):
            r = self.cli(cmd, "--help")
            self.assertEqual(r.returncode, 0)
            self.assertIn("usage: moegraph " + cmd, r.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
