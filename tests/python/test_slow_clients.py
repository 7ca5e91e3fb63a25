#!/usr/bin/env python3
"""Slow, frozen and greedy clients on the fake engine: no streamed message is
larger than max_message_bytes (a catch-up goes in several); a client that
stops reading pauses its sequence (no tokens generated, slot kept) and, past
stall_timeout_seconds, its call ends with RESOURCE_EXHAUSTED; a frozen client
loses its connection to the server's keepalive pings and its request ends; one
connection holds at most max_streams_per_connection calls; one caller (its
API key's name, else its client address) gets at most max_waiting_per_identity
places in the queue, and one that has filled its share blocks no other."""

import hashlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Daemon, collect, stubs  # noqa: E402

pb = stubs().generation_pb2
rpc = stubs().generation_pb2_grpc


def metric(d, name):
    m = re.search(r"^%s(?:\{[^}]*\})? ([0-9.e+]+)$" % re.escape(name), d.metrics_text(), re.M)
    return float(m.group(1)) if m else None


def long_request(request_id, max_tokens, logprobs=False):
    req = pb.GenerateRequest(request_id=request_id, token_ids=pb.TokenIds(ids=[3, 4, 5]))
    req.stopping.max_tokens = max_tokens
    req.stopping.ignore_eos = True
    if logprobs:
        req.output.logprobs = True
        req.output.top_logprobs = 20
    return req


def own_channel(d):
    # A connection of its own (Python shares subchannels between channels by default).
    return grpc.insecure_channel(d.address, options=[("grpc.use_local_subchannel_pool", 1)])


class SlowReaderTest(unittest.TestCase):
    def test_messages_are_capped_and_a_slow_reader_pauses_its_sequence(self):
        flags = ["--fake-step-ms=0", "--max_message_bytes=4096",
                 "--max_stream_backlog_bytes=16384", "--stall_timeout_seconds=120",
                 "--context_limit=100000", "--sampling.max_tokens=80000"]
        with Daemon(fake_engine=True, flags=flags) as d:
            ch = own_channel(d)
            stream = rpc.GenerationStub(ch).Generate(long_request("slow", 60000, True),
                                                     timeout=300)
            # The client's HTTP/2 window (grown by its BDP probes) takes a few MB
            # first; then the backlog fills and the sequence pauses.
            # On a loaded machine that takes longer: wait (up to 60 s) until a whole
            # second passes without one token more.
            deadline = time.monotonic() + 60
            second = metric(d, "moegraph_generated_tokens_total")
            while True:
                first = second
                time.sleep(1.0)
                second = metric(d, "moegraph_generated_tokens_total")
                if first == second or time.monotonic() > deadline:
                    break
            # Paused: not one token more while the client reads nothing, below the
            # 60,000 that steps of 0 ms would have made by now.
            self.assertEqual(first, second)
            self.assertLess(second, 40000)
            self.assertEqual(metric(d, "moegraph_requests_running"), 1)
            sizes, ids, final = [], [], None
            for msg in stream:
                sizes.append(msg.ByteSize())
                if msg.WhichOneof("kind") == "chunk":
                    ids.extend(msg.chunk.token_ids)
                    self.assertEqual(len(msg.chunk.logprobs), len(msg.chunk.token_ids))
                else:
                    final = msg.final
            self.assertEqual(len(ids), 60000)
            self.assertEqual(final.finish_reason, pb.FINISH_REASON_LENGTH)
            self.assertLessEqual(max(sizes), 4096)
            self.assertGreater(len(sizes), 60000 * 200 // 4096)  # split, not merged
            print("slow reader: %d messages, largest %d bytes, %d tokens generated while "
                  "unread" % (len(sizes), max(sizes), second))
            ch.close()

    def test_a_stalled_client_ends_with_resource_exhausted(self):
        flags = ["--fake-step-ms=0", "--max_message_bytes=4096",
                 "--max_stream_backlog_bytes=8192", "--stall_timeout_seconds=1",
                 "--context_limit=100000", "--sampling.max_tokens=50000"]
        with Daemon(fake_engine=True, flags=flags) as d:
            ch = own_channel(d)
            stream = rpc.GenerationStub(ch).Generate(long_request("stalled", 40000, True),
                                                     timeout=60)
            deadline = time.monotonic() + 15
            while "request stalled: abort" not in d.logs():
                self.assertLess(time.monotonic(), deadline, d.logs()[-2000:])
                time.sleep(0.1)
            # The slot is free while the client still has not read a byte.
            self.assertEqual(metric(d, "moegraph_requests_running"), 0)
            got = 0
            with self.assertRaises(grpc.RpcError) as ctx:
                for msg in stream:
                    got += len(msg.chunk.token_ids)
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertEqual(
                ctx.exception.details(),
                "the client read no output for 1.0 s while its stream's backlog was full "
                "(stall_timeout_seconds, max_stream_backlog_bytes)")
            self.assertLess(got, 40000)
            ch.close()

    def test_a_frozen_client_loses_its_connection_to_keepalive(self):
        flags = ["--fake-step-ms=20", "--keepalive_time_seconds=1",
                 "--keepalive_timeout_seconds=1", "--stall_timeout_seconds=600",
                 "--context_limit=200000", "--sampling.max_tokens=150000"]
        with Daemon(fake_engine=True, flags=flags) as d:
            client = subprocess.Popen([sys.executable, "-c", FROZEN_CLIENT, d.address,
                                       stubs().dir], stdout=subprocess.PIPE, text=True)
            try:
                self.assertEqual(client.stdout.readline().strip(), "reading")
                os.kill(client.pid, signal.SIGSTOP)
                t0 = time.monotonic()
                while "request frozen: abort" not in d.logs():
                    self.assertLess(time.monotonic() - t0, 20, d.logs()[-2000:])
                    time.sleep(0.1)
                print("frozen client: request ended %.1f s after SIGSTOP"
                      % (time.monotonic() - t0))
                self.assertEqual(metric(d, "moegraph_requests_running"), 0)
            finally:
                client.kill()
                client.wait()


FROZEN_CLIENT = r"""
import sys, time
sys.path.insert(0, sys.argv[2])
import grpc, generation_pb2 as pb, generation_pb2_grpc as rpc
ch = grpc.insecure_channel(sys.argv[1])
req = pb.GenerateRequest(request_id="frozen", token_ids=pb.TokenIds(ids=[3, 4, 5]))
req.stopping.max_tokens = 100000
req.stopping.ignore_eos = True
stream = rpc.GenerationStub(ch).Generate(req)
next(stream)
print("reading", flush=True)
time.sleep(3600)
"""


class GreedyClientTest(unittest.TestCase):
    def test_one_connection_holds_at_most_max_streams(self):
        flags = ["--fake-step-ms=5", "--max_streams_per_connection=2", "--slots=4",
                 "--context_limit=200000", "--sampling.max_tokens=150000"]
        with Daemon(fake_engine=True, flags=flags) as d:
            ch = own_channel(d)
            stub = rpc.GenerationStub(ch)
            streams = [stub.Generate(long_request("s%d" % i, 100000), timeout=60)
                       for i in range(2)]
            for s in streams:
                next(s)
            with self.assertRaises(grpc.RpcError) as ctx:
                stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=1)
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
            other = own_channel(d)
            info = rpc.GenerationStub(other).GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
            self.assertEqual(info.slots, 4)
            for s in streams:
                s.cancel()
            other.close()
            ch.close()

    def test_one_client_gets_its_share_of_the_queue(self):
        flags = ["--fake-step-ms=5", "--slots=1", "--queue_size=10",
                 "--max_waiting_per_identity=1",
                 "--context_limit=200000", "--sampling.max_tokens=150000"]
        with Daemon(fake_engine=True, flags=flags) as d:
            stub = d.generation()
            running = stub.Generate(long_request("running", 100000), timeout=60)
            next(running)
            waiting = stub.Generate(long_request("waiting", 10), timeout=60)
            deadline = time.monotonic() + 10
            while metric(d, "moegraph_requests_waiting") != 1:
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.05)
            with self.assertRaises(grpc.RpcError) as ctx:
                collect(stub.Generate(long_request("third", 10), timeout=10))
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertEqual(ctx.exception.details(),
                             "this caller already has 1 requests waiting, its share of the "
                             "queue (max_waiting_per_identity 1); retry when one has started")
            running.cancel()
            ids, _, final, _ = collect(waiting)
            self.assertEqual(len(ids), 10)

    def test_each_identity_gets_its_own_share_of_the_queue(self):
        # alice and bob call from the same address (127.0.0.1) with their own
        # API keys: alice filling her share must not cost bob his.
        tmp = tempfile.TemporaryDirectory(prefix="moegraph-share-")
        self.addCleanup(tmp.cleanup)
        keys = os.path.join(tmp.name, "keys")
        with open(keys, "w") as f:
            f.write("alice %s\nbob %s\n" % (hashlib.sha256(b"key-a").hexdigest(),
                                            hashlib.sha256(b"key-b").hexdigest()))
        alice = [("authorization", "Bearer key-a")]
        bob = [("authorization", "Bearer key-b")]
        flags = ["--fake-step-ms=5", "--slots=1", "--queue_size=10",
                 "--max_waiting_per_identity=1", "--api_keys_file=" + keys,
                 "--context_limit=200000", "--sampling.max_tokens=150000"]
        with Daemon(fake_engine=True, flags=flags) as d:
            stub = d.generation()
            running = stub.Generate(long_request("running", 100000), timeout=60, metadata=alice)
            next(running)
            waiting = stub.Generate(long_request("waiting", 10), timeout=60, metadata=alice)
            deadline = time.monotonic() + 10
            while metric(d, "moegraph_requests_waiting") != 1:
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.05)
            with self.assertRaises(grpc.RpcError) as ctx:
                collect(stub.Generate(long_request("third", 10), timeout=10, metadata=alice))
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("(max_waiting_per_identity 1)", ctx.exception.details())
            # bob still gets a place, from the same address.
            bobs = stub.Generate(long_request("bobs", 10), timeout=60, metadata=bob)
            deadline = time.monotonic() + 10
            while metric(d, "moegraph_requests_waiting") != 2:
                if bobs.done():
                    self.fail("bob was refused: %s: %s" % (bobs.code(), bobs.details()))
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.05)
            running.cancel()
            for stream in (waiting, bobs):
                ids, _, final, _ = collect(stream)
                self.assertEqual(len(ids), 10)


if __name__ == "__main__":
    unittest.main()
