#!/usr/bin/env python3
"""The state pool seen from a real gRPC client: a daemon whose state pool is
smaller than its context limit (--state_pool_tokens) states in GetModelInfo
the context a request can really get, refuses a request the pool can never
hold with RESOURCE_EXHAUSTED naming the limit (and counts it), runs one of
exactly the limit, and shows the pool's capacity and use on /metrics.

    on dsv4-tiny: slots 2, context 4096, state_pool_tokens 1000; the CSA
    entries bind: 6 pages of 256 tokens hold one sequence of up to 1539
    tokens (server/testing and tests/unit/state_pool_test.cc derive it)
    on the fake engine (tokens only, 5 ms steps): the pool's reservation
    while a request runs, and its release on cancel
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

from harness import Daemon, collect, stubs  # noqa: E402
import prom_text  # noqa: E402

pb = stubs().generation_pb2
LIMIT = 1539


def request(prompt, max_tokens, **kw):
    return pb.GenerateRequest(token_ids=pb.TokenIds(ids=prompt), add_bos=False,
                              stopping=pb.StoppingParams(max_tokens=max_tokens, ignore_eos=True),
                              **kw)


def value(text, name, **labels):
    return prom_text.parse(text).get((name, frozenset(labels.items())))


class TinyModelPoolTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon(flags=["--slots=2", "--context_limit=4096",
                                   "--state_pool_tokens=1000"]).start()
        cls.stub = cls.daemon.generation()

    @classmethod
    def tearDownClass(cls):
        assert cls.daemon.stop() == 0, cls.daemon.logs()

    def refusal(self, req):
        with self.assertRaises(grpc.RpcError) as ctx:
            collect(self.stub.Generate(req, timeout=30))
        return ctx.exception

    def test_model_info_states_the_context_a_request_can_get(self):
        info = self.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
        self.assertEqual(info.context_limit, LIMIT)
        self.assertEqual(info.slots, 2)

    def test_pool_limit_refusal_names_the_limit_and_the_limit_runs(self):
        before = self.daemon.metrics_text()
        err = self.refusal(request([5, 6, 7], LIMIT - 3 + 1))
        self.assertEqual(err.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, err.details())
        self.assertEqual(
            err.details(),
            "prompt (3 tokens) + max_tokens (1537) needs state for 1540 tokens, but the state "
            "pool holds at most 1539 tokens for one request (state_pool_tokens); max_tokens at "
            "most 1536")
        # Beyond the context limit it is INVALID_ARGUMENT, as before.
        err = self.refusal(request([5, 6, 7], 4094))
        self.assertEqual(err.code(), grpc.StatusCode.INVALID_ARGUMENT, err.details())
        self.assertIn("context limit of 4096", err.details())

        ids, _, final, _ = collect(self.stub.Generate(request([5, 6, 7], LIMIT - 3),
                                                      timeout=120))
        self.assertEqual(final.finish_reason, pb.FINISH_REASON_LENGTH, final)
        self.assertEqual(len(ids), LIMIT - 3)
        # A request without max_tokens gets the default (256), within the pool.
        ids, _, final, _ = collect(self.stub.Generate(
            pb.GenerateRequest(token_ids=pb.TokenIds(ids=[5, 6, 7]), add_bos=False,
                               stopping=pb.StoppingParams(ignore_eos=True)), timeout=60))
        self.assertEqual(len(ids), 256)

        after = self.daemon.metrics_text()

        def delta(reason):
            name = "moegraph_requests_rejected_total"
            return value(after, name, reason=reason) - value(before, name, reason=reason)

        self.assertEqual(delta("pool_exhausted"), 1)
        self.assertEqual(delta("too_long"), 1)
        self.assertEqual(delta("queue_full"), 0)
        # 6 + 3 + 6 pages (CSA, HCA, indexer); the CSA pages hold 6 x 256 tokens.
        self.assertEqual(value(after, "moegraph_state_pool_pages_capacity"), 15)
        self.assertEqual(value(after, "moegraph_state_pool_tokens_capacity"), 1536)
        self.assertEqual(value(after, "moegraph_request_max_tokens"), LIMIT)
        for name in ("moegraph_state_pool_tokens_reserved", "moegraph_state_pool_tokens_used",
                     "moegraph_state_pool_pages_reserved", "moegraph_state_pool_pages_used"):
            self.assertEqual(value(after, name), 0, name)
        self.assertEqual(value(after, "moegraph_requests_total", finish_reason="error"), 0)


class FakeEnginePoolTest(unittest.TestCase):
    def test_reservation_while_running_and_release_on_cancel(self):
        with Daemon(fake_engine=True, flags=["--slots=2", "--context_limit=4096",
                                             "--state_pool_tokens=1000",
                                             "--fake-step-ms=5"]) as daemon:
            stub = daemon.generation()
            info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
            self.assertEqual(info.context_limit, 1000)
            with self.assertRaises(grpc.RpcError) as ctx:
                collect(stub.Generate(request([5, 6, 7], 998), timeout=30))
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("at most 1000 tokens for one request", ctx.exception.details())

            call = stub.Generate(request([5, 6, 7], 500), timeout=60)
            self.assertEqual(next(call).WhichOneof("kind"), "chunk")
            # Reserved at admission, before the first token; used grows by
            # one token a step (reported at the end of each step).
            running = daemon.metrics_text()
            self.assertEqual(value(running, "moegraph_state_pool_tokens_capacity"), 1000)
            self.assertEqual(value(running, "moegraph_state_pool_tokens_reserved"), 503)
            deadline = time.monotonic() + 10
            while value(running, "moegraph_state_pool_tokens_used") < 10:
                self.assertLess(time.monotonic(), deadline, running)
                time.sleep(0.02)
                running = daemon.metrics_text()
            self.assertLess(value(running, "moegraph_state_pool_tokens_used"), 503)
            self.assertEqual(value(running, "moegraph_state_pool_tokens_reserved"), 503)
            self.assertEqual(value(running, "moegraph_state_pool_pages_capacity"), 0)  # no pages
            call.cancel()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                after = daemon.metrics_text()
                if value(after, "moegraph_requests_total", finish_reason="abort") == 1:
                    break
                time.sleep(0.05)
            self.assertEqual(value(after, "moegraph_requests_total", finish_reason="abort"), 1)
            self.assertEqual(value(after, "moegraph_state_pool_tokens_reserved"), 0)
            self.assertEqual(value(after, "moegraph_state_pool_tokens_used"), 0)
            self.assertEqual(value(after, "moegraph_requests_rejected_total",
                                   reason="pool_exhausted"), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
