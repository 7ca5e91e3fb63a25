#!/usr/bin/env python3
"""Hostile input and start-up faults, as an outside client or operator would
try them: malformed protobuf gets INVALID_ARGUMENT with a message (not
UNIMPLEMENTED with none) and libprotobuf's log lines are rate-limited; huge
prompts and repeated fields are refused cheaply, naming the field and the
limit; Tokenize is bounded like Generate; a bad --config, a config that would
allocate for nothing, a corrupt tokenizer.json and an out-of-range routing
table fail start-up with the reason."""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import unittest

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TINY_MODEL, Daemon, collect, daemon_binary, free_port, stubs  # noqa: E402

pb = stubs().generation_pb2

RAW = lambda b: b  # noqa: E731  (bytes on the wire as given)


def raw_generate(channel, payload, timeout=10):
    call = channel.unary_stream("/moegraph.v1.Generation/Generate", request_serializer=RAW,
                                response_deserializer=RAW)
    return list(call(payload, timeout=timeout))


def raw_unary(channel, method, payload, timeout=10):
    call = channel.unary_unary("/moegraph.v1.Generation/" + method, request_serializer=RAW,
                               response_deserializer=RAW)
    return call(payload, timeout=timeout)


def start_fails(*flags, model_dir=TINY_MODEL, timeout=60):
    args = [daemon_binary(), "--listen_address=127.0.0.1:%d" % free_port(),
            "--metrics_address=", "--model_dir=" + model_dir] + list(flags)
    t0 = time.monotonic()
    run = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    return run.returncode, run.stdout + run.stderr, time.monotonic() - t0


class MalformedTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon().start()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def test_malformed_protobuf_is_invalid_argument_with_a_message(self):
        ch = self.d.channel()
        # A truncated varint, then a length past the end, then invalid UTF-8 in `text`.
        for payload in (b"\xff\xff\xff", b"\x12\x7f" + b"a" * 3, b"\x12\x03\xff\xfe\xfd"):
            with self.assertRaises(grpc.RpcError) as ctx:
                raw_generate(ch, payload)
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, payload)
            self.assertEqual(
                ctx.exception.details(),
                "request: not a valid moegraph.v1.GenerateRequest (%d bytes of malformed "
                "protobuf, or a string field that is not valid UTF-8)" % len(payload))
        for method, name in (("Tokenize", "TokenizeRequest"), ("Abort", "AbortRequest"),
                             ("GetModelInfo", "GetModelInfoRequest")):
            with self.assertRaises(grpc.RpcError) as ctx:
                raw_unary(ch, method, b"\xff\xff\xff")
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, method)
            self.assertIn("not a valid moegraph.v1." + name, ctx.exception.details())
        # The well-formed call still works on the same connection.
        req = pb.GenerateRequest(token_ids=pb.TokenIds(ids=[3, 4]))
        req.stopping.max_tokens = 2
        ids, _, final, _ = collect(self.d.generation().Generate(req, timeout=10))
        self.assertEqual(len(ids), 2)

    def test_protobuf_log_lines_are_rate_limited(self):
        ch = self.d.channel()
        before = self.d.logs().count("libprotobuf")
        for _ in range(100):
            with self.assertRaises(grpc.RpcError):
                raw_generate(ch, b"\x12\x03\xff\xfe\xfd")
        time.sleep(0.2)
        lines = self.d.logs().count("libprotobuf") - before
        # At most 10 a minute (some may already have been used by the other test).
        self.assertLessEqual(lines, 10, self.d.logs()[-3000:])

    def test_huge_text_prompt_is_refused_before_tokenizing(self):
        req = pb.GenerateRequest(text="a" * 3_900_000)
        t0 = time.monotonic()
        with self.assertRaises(grpc.RpcError) as ctx:
            collect(self.d.generation().Generate(req, timeout=30))
        elapsed = time.monotonic() - t0
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(ctx.exception.details(),
                         "prompt.text: at most 1048576 bytes (max_prompt_bytes), got 3900000")
        self.assertLess(elapsed, 5.0)

    def test_text_past_the_context_limit_stops_tokenizing(self):
        info = self.d.generation().GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
        req = pb.GenerateRequest(text="hello world " * 80000)  # 960,000 bytes, under the byte limit
        with self.assertRaises(grpc.RpcError) as ctx:
            collect(self.d.generation().Generate(req, timeout=30))
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(ctx.exception.details(),
                         "prompt.text: more than %d tokens, the most the context limit of %d "
                         "tokens allows" % (info.context_limit - 1, info.context_limit))

    def test_tokenize_is_bounded_like_generate(self):
        gen = self.d.generation()
        info = gen.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
        with self.assertRaises(grpc.RpcError) as ctx:
            gen.Tokenize(pb.TokenizeRequest(text="a" * 2_000_000), timeout=30)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(ctx.exception.details(),
                         "text: at most 1048576 bytes (max_prompt_bytes), got 2000000")
        with self.assertRaises(grpc.RpcError) as ctx:
            gen.Tokenize(pb.TokenizeRequest(text="hello world " * 80000), timeout=30)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(ctx.exception.details(),
                         "text: more than %d tokens, the most the context limit of %d tokens "
                         "allows" % (info.context_limit, info.context_limit))
        ok = gen.Tokenize(pb.TokenizeRequest(text="hello world"), timeout=10)
        self.assertGreater(len(ok.token_ids), 0)

    def test_a_million_stop_token_ids_are_refused_by_count(self):
        req = pb.GenerateRequest(token_ids=pb.TokenIds(ids=[3, 4]))
        req.stopping.stop_token_ids.extend([7] * 1_000_000)
        with self.assertRaises(grpc.RpcError) as ctx:
            collect(self.d.generation().Generate(req, timeout=30))
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(ctx.exception.details(),
                         "stopping.stop_token_ids: at most 64 ids (max_stop_token_ids), "
                         "got 1000000")


def fixture_copy():
    tmp = tempfile.mkdtemp(prefix="moegraph-fixture-")
    dst = os.path.join(tmp, "dsv4-tiny")
    shutil.copytree(TINY_MODEL, dst)
    return tmp, dst


class StartupFaultTest(unittest.TestCase):
    def test_config_directory_is_an_error(self):
        d = tempfile.mkdtemp(prefix="moegraph-confdir-")
        try:
            code, out, _ = start_fails("--config", d, "--fake-engine")
            self.assertEqual(code, 2, out)
            self.assertIn("config file %s: is a directory, not a YAML file" % d, out)
        finally:
            os.rmdir(d)

    def test_unreadable_config_is_an_error(self):
        code, out, _ = start_fails("--config", "/nonexistent/moegraphd.yaml", "--fake-engine")
        self.assertEqual(code, 2, out)
        self.assertIn("cannot open: No such file or directory", out)

    def test_slots_65536_is_refused_before_allocating(self):
        code, out, elapsed = start_fails("--slots=65536")
        self.assertEqual(code, 2, out)
        self.assertIn("max_step_tokens: must be >= slots (one decode token per slot each step), "
                      "got 256 with slots 65536", out)
        self.assertNotIn("listening on", out)  # nothing started
        self.assertLess(elapsed, 3.0)

    def test_corrupt_tokenizer_fails_start_up(self):
        tmp, model = fixture_copy()
        try:
            with open(os.path.join(model, "tokenizer.json"), "w") as f:
                f.write('{"model": {"type": "BPE", "vocab": ')
            code, out, _ = start_fails(model_dir=model)
            self.assertEqual(code, 1, out)
            self.assertIn("tokenizer.json: not valid JSON", out)
            self.assertNotIn("ready:", out)
        finally:
            shutil.rmtree(tmp)

    def test_out_of_range_routing_table_fails_start_up(self):
        tmp, model = fixture_copy()
        try:
            path = os.path.join(model, "model.safetensors")
            with open(path, "r+b") as f:
                n = struct.unpack("<Q", f.read(8))[0]
                header = json.loads(f.read(n))
                name = "model.layers.1.ffn.gate.tid2eid"
                info = header[name]
                self.assertEqual(info["dtype"], "I64")
                f.seek(8 + n + info["data_offsets"][0] + 8 * 5)  # token 2, second choice
                f.write(struct.pack("<q", 999))
            code, out, _ = start_fails(model_dir=model)
            self.assertEqual(code, 1, out)
            self.assertIn("layers.1.ffn.gate.tid2eid: entry 5 (token 2) is expert 999, outside "
                          "[0, ", out)
            self.assertNotIn("ready:", out)
        finally:
            shutil.rmtree(tmp)


class MetricsEndpointTest(unittest.TestCase):
    def test_idle_and_slow_header_connections_do_not_block_a_scrape(self):
        # The finding: two idle connections held both of civetweb's two
        # worker threads, and a scrape took 4.4 s (20 s and failed with two
        # slow-header connections).
        import socket
        with Daemon(fake_engine=True) as d:
            host, port = d.metrics_address.split(":")
            holders = []
            for i in range(6):
                sock = socket.create_connection((host, int(port)), timeout=5)
                if i % 2:
                    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
                holders.append(sock)
            time.sleep(0.5)
            t0 = time.monotonic()
            text = d.metrics_text(timeout=10)
            took = time.monotonic() - t0
            self.assertIn("moegraph_requests_running", text)
            self.assertLess(took, 1.0, "scrape took %.2f s beside 6 held connections" % took)
            # More held connections than worker threads: the half-sent ones are
            # dropped after request_timeout_ms, so a scrape still gets through.
            for i in range(12):
                sock = socket.create_connection((host, int(port)), timeout=5)
                sock.sendall(b"GET /metrics HTTP/1.1\r\n")
                holders.append(sock)
            t0 = time.monotonic()
            text = d.metrics_text(timeout=15)
            took = time.monotonic() - t0
            self.assertIn("moegraph_requests_running", text)
            self.assertLess(took, 8.0, "scrape took %.2f s beside 18 held connections" % took)
            print("metrics: scrape beside 18 held connections took %.2f s" % took)
            for sock in holders:
                sock.close()


if __name__ == "__main__":
    unittest.main()
