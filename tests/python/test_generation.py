#!/usr/bin/env python3
"""moegraphd end to end on the real dsv4-tiny model, with the grpcio client:
greedy Generate of the golden prompts a and b (token ids, add_bos false,
ignore_eos, 40 tokens) returns the golden decode_ids, alone and concurrently;
32 concurrent streams with mixed parameters are complete and correct (greedy
= golden, seeded sampling = the same request alone); text prompts round-trip
through the tokenizer; stop strings cut the text; three in-process expert-
parallel CPU ranks give the golden tokens too. With MOEGRAPH_CPU_PIPELINED=1
the engine samples on its backend and its steps run ahead, as on a GPU. Exits 77 (skipped) when the
build has no engine to load the model with."""

import json
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

from harness import TINY_MODEL, Daemon, DaemonError, collect, golden, stubs  # noqa: E402

pb = stubs().generation_pb2
GOLDEN = golden()["prompts"]
DAEMON = None


def golden_request(name, **kw):
    return pb.GenerateRequest(
        token_ids=pb.TokenIds(ids=GOLDEN[name]["prompt_ids"]), add_bos=False,
        stopping=pb.StoppingParams(max_tokens=40, ignore_eos=True), **kw)


def byte_level_decoder():
    """id -> bytes for the tiny model's byte-level BPE vocabulary (special
    tokens map to None), to check streamed text independently."""
    with open(os.path.join(TINY_MODEL, "tokenizer.json")) as f:
        tok = json.load(f)
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    char_to_byte = {chr(c): b for b, c in zip(bs, cs)}
    added = {t["id"]: t for t in tok.get("added_tokens", [])}
    table = {i: bytes(char_to_byte[ch] for ch in s)
             for s, i in tok["model"]["vocab"].items() if i not in added}
    for i, t in added.items():
        table[i] = None if t.get("special") else t["content"].encode()
    return lambda ids: b"".join(table[i] or b"" for i in ids)


class GenerationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = DAEMON
        cls.stub = DAEMON.generation()

    def generate(self, request, timeout=120):
        return collect(self.stub.Generate(request, timeout=timeout))

    def test_model_info(self):
        info = self.stub.GetModelInfo(pb.GetModelInfoRequest())
        self.assertEqual(info.vocab_size, 320)
        self.assertEqual(list(info.eos_token_ids), [1])
        self.assertEqual(info.context_limit, 4096)
        self.assertEqual(info.name, "dsv4-tiny")

    def test_golden_a_and_b(self):
        for name in ("a", "b"):
            with self.subTest(prompt=name):
                ids, _, final, _ = self.generate(golden_request(name))
                self.assertEqual(ids, GOLDEN[name]["decode_ids"])
                self.assertEqual(final.finish_reason, pb.FINISH_REASON_LENGTH)
                self.assertEqual(final.usage.prompt_tokens, len(GOLDEN[name]["prompt_ids"]))
                self.assertEqual(final.usage.completion_tokens, 40)

    @unittest.skipUnless(os.environ.get("MOEGRAPH_CPU_PIPELINED"), "steps not pipelined")
    def test_steps_ran_ahead(self):
        # --cpu-pipelined: the golden tokens above came from steps launched
        # before the previous step's ids were collected.
        self.generate(golden_request("a"))
        text = self.daemon.metrics_text()
        ahead = [float(line.split()[-1]) for line in text.splitlines()
                 if line.startswith("moegraph_steps_launched_ahead_total")]
        self.assertTrue(ahead and ahead[0] >= 30, text[:2000])

    def test_golden_a_and_b_concurrently(self):
        out = {}
        threads = [threading.Thread(target=lambda n=n: out.__setitem__(n, self.generate(
            golden_request(n)))) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for name in ("a", "b"):
            self.assertEqual(out[name][0], GOLDEN[name]["decode_ids"], name)

    def test_32_concurrent_mixed_streams(self):
        requests = []
        for i in range(32):
            name = "ab"[i % 2]
            kind = i % 4
            if kind < 2:  # greedy
                requests.append(("greedy", name, golden_request(name, request_id="mix-%d" % i)))
            else:
                sampling = pb.SamplingParams(temperature=0.6 + 0.1 * (i % 5), top_p=0.9,
                                             seed=1000 + i)
                if i % 8 == 2:
                    sampling.top_k = 40
                if i % 8 == 6:
                    sampling.min_p = 0.05
                    sampling.repetition_penalty = 1.1
                    sampling.presence_penalty = 0.3
                    sampling.frequency_penalty = 0.2
                req = pb.GenerateRequest(
                    request_id="mix-%d" % i, token_ids=pb.TokenIds(ids=GOLDEN[name]["prompt_ids"]),
                    add_bos=False, sampling=sampling,
                    stopping=pb.StoppingParams(max_tokens=10 + i, ignore_eos=True),
                    output=pb.OutputOptions(logprobs=True, top_logprobs=2))
                requests.append(("seeded", name, req))
        # Seeded requests alone first (distinct request ids are fine: the
        # output must not depend on them).
        alone = {}
        for kind, name, req in requests:
            if kind == "seeded":
                solo = pb.GenerateRequest()
                solo.CopyFrom(req)
                solo.request_id = req.request_id + "-alone"
                alone[req.request_id] = self.generate(solo)[0]
        results, errors = {}, {}

        def run(req):
            try:
                results[req.request_id] = self.generate(req, timeout=300)
            except grpc.RpcError as e:
                errors[req.request_id] = e

        threads = [threading.Thread(target=run, args=(r,)) for _, _, r in requests]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, {})
        for kind, name, req in requests:
            ids, _, final, chunks = results[req.request_id]
            with self.subTest(request=req.request_id, kind=kind):
                self.assertIsNotNone(final)
                self.assertEqual(final.finish_reason, pb.FINISH_REASON_LENGTH)
                self.assertEqual(final.usage.completion_tokens, len(ids))
                if kind == "greedy":
                    self.assertEqual(ids, GOLDEN[name]["decode_ids"])
                else:
                    self.assertEqual(len(ids), req.stopping.max_tokens)
                    self.assertEqual(ids, alone[req.request_id])
                    lps = [lp for c in chunks for lp in c.logprobs]
                    self.assertEqual([lp.chosen.token_id for lp in lps], ids)

    def test_text_prompt_round_trip(self):
        decode = byte_level_decoder()
        text = "Hello, world! 你好，世界。"
        tokenized = self.stub.Tokenize(pb.TokenizeRequest(text=text, add_bos=False)).token_ids
        self.assertEqual(decode(tokenized).decode(), text)
        with_bos = self.stub.Tokenize(pb.TokenizeRequest(text=text)).token_ids
        self.assertEqual(list(with_bos), [0] + list(tokenized))  # add_bos_token: true
        ids, streamed, final, _ = self.generate(pb.GenerateRequest(
            text=text, stopping=pb.StoppingParams(max_tokens=24, ignore_eos=True)))
        self.assertEqual(final.usage.prompt_tokens, len(with_bos))
        self.assertEqual(len(ids), 24)
        expected = decode(ids)
        try:
            self.assertEqual(streamed, expected.decode())
        except UnicodeDecodeError:
            # Invalid UTF-8 from a random model: the stream still never
            # splits a character (protobuf strings are valid UTF-8).
            self.assertTrue(streamed.encode())
        # Token-id prompts get the BOS too unless add_bos is false.
        _, _, final, _ = self.generate(pb.GenerateRequest(
            token_ids=pb.TokenIds(ids=tokenized), stopping=pb.StoppingParams(max_tokens=1)))
        self.assertEqual(final.usage.prompt_tokens, len(tokenized) + 1)
        # The same prompt as ids gives the same tokens.
        ids2, _, _, _ = self.generate(pb.GenerateRequest(
            token_ids=pb.TokenIds(ids=with_bos), add_bos=False,
            stopping=pb.StoppingParams(max_tokens=24, ignore_eos=True)))
        self.assertEqual(ids2, ids)

    def test_tokenizer_golden(self):
        with open(os.path.join(TINY_MODEL, "tokenizer_golden.json")) as f:
            cases = json.load(f)[:8]
        for case in cases:
            with self.subTest(text=case["text"][:30]):
                got = self.stub.Tokenize(pb.TokenizeRequest(text=case["text"], add_bos=False))
                self.assertEqual(list(got.token_ids), case["ids"])

    def test_stop_string_cuts_the_text(self):
        _, text, _, _ = self.generate(golden_request("a"))
        decode = byte_level_decoder()
        self.assertEqual(text, decode(GOLDEN["a"]["decode_ids"]).decode("utf-8", "replace"))
        # A stop string from the middle of the golden text.
        middle = len(text) // 2
        stop = text[middle:middle + 3]
        if len(stop.encode()) < 2:
            self.skipTest("golden text too short for a stop string")
        _, cut, final, _ = self.generate(pb.GenerateRequest(
            token_ids=pb.TokenIds(ids=GOLDEN["a"]["prompt_ids"]), add_bos=False,
            stopping=pb.StoppingParams(max_tokens=40, ignore_eos=True, stop=[stop])))
        self.assertEqual(final.finish_reason, pb.FINISH_REASON_STOP)
        self.assertEqual(final.stop_string, stop)
        self.assertEqual(cut, text[:text.index(stop)])
        _, kept, _, _ = self.generate(pb.GenerateRequest(
            token_ids=pb.TokenIds(ids=GOLDEN["a"]["prompt_ids"]), add_bos=False,
            stopping=pb.StoppingParams(max_tokens=40, ignore_eos=True, stop=[stop],
                                       include_stop_str_in_output=True)))
        self.assertEqual(kept, text[:text.index(stop)] + stop)


def assert_golden_staggered(test, stub, names):
    """Generates the golden prompts `names` concurrently, each started 2 ms
    after the previous one (later prompts join running decodes), and checks
    every output is the golden greedy decode."""
    out = {}

    def run(i, name):
        out[i] = collect(stub.Generate(golden_request(name), timeout=120))

    threads = [threading.Thread(target=run, args=(i, n)) for i, n in enumerate(names)]
    for t in threads:
        t.start()
        time.sleep(0.002)
    for t in threads:
        t.join()
    for i, name in enumerate(names):
        test.assertEqual(out[i][0], GOLDEN[name]["decode_ids"], (i, name))


class ChunkedPrefillTest(unittest.TestCase):
    """A 16-token step budget: prompt a (45 tokens) prefills in chunks, in the
    same steps as the decodes of the others; greedy outputs stay golden."""

    def test_small_step_budget(self):
        daemon = Daemon(flags=["--slots=4", "--max_step_tokens=16"])
        daemon.start(timeout=300)
        try:
            assert_golden_staggered(self, daemon.generation(), ["b", "a", "b", "a", "a", "b"])
        finally:
            self.assertEqual(daemon.stop(), 0)

    def test_expert_parallel_ranks(self):
        # Three in-process CPU ranks (docs/expert-parallel.md): the same golden
        # tokens, with requests joining running decodes on other ranks.
        daemon = Daemon(flags=["--slots=6", "--devices=cpu:0,cpu:1,cpu:2", "--layout=ep"])
        daemon.start(timeout=300)
        try:
            stub = daemon.generation()
            info = stub.GetModelInfo(pb.GetModelInfoRequest())
            self.assertEqual(list(info.devices), ["cpu:0", "cpu:1", "cpu:2"])
            self.assertIn("8 routed experts split 2/3/3", info.layout)
            self.assertIn("exchange in-process, decode graphs off", info.layout)
            assert_golden_staggered(self, stub, ["a", "b", "a", "b", "b"])
        finally:
            self.assertEqual(daemon.stop(), 0)

    def test_nccl_transport_on_cpu_ranks_is_refused_by_name(self):
        # NCCL is for CUDA ranks: the daemon says so and exits, it does not
        # serve on another transport.
        daemon = Daemon(flags=["--slots=4", "--devices=cpu:0,cpu:1", "--transport=nccl"])
        with self.assertRaises(DaemonError) as ctx:
            daemon.start(timeout=120)
        self.assertIn("exited with 1", str(ctx.exception))
        self.assertIn("transport: 'nccl' needs CUDA ranks (devices cuda:N,...)",
                      str(ctx.exception))
        self.assertEqual(daemon.stop(), 1)

    def test_layer_placement_ranks(self):
        # Two in-process CPU ranks, each a block of layers: the same golden
        # tokens, with chunked prefills beside running decodes.
        daemon = Daemon(flags=["--slots=4", "--max_step_tokens=16", "--devices=cpu:0,cpu:1",
                               "--layout=layers"])
        daemon.start(timeout=300)
        try:
            stub = daemon.generation()
            info = stub.GetModelInfo(pb.GetModelInfoRequest())
            self.assertEqual(list(info.devices), ["cpu:0", "cpu:1"])
            self.assertIn("layers: cpu:0 [0, 2) + embedding, cpu:1 [2, 5) + head", info.layout)
            assert_golden_staggered(self, stub, ["a", "b", "a", "b", "b"])
        finally:
            self.assertEqual(daemon.stop(), 0)

    def test_ep_within_layer_blocks(self):
        # ep+layers: two blocks of layers, two expert-parallel ranks each.
        daemon = Daemon(flags=["--slots=4", "--max_step_tokens=16",
                               "--devices=cpu:0,cpu:1,cpu:2,cpu:3", "--layout=ep+layers",
                               "--layer_blocks=2"])
        daemon.start(timeout=300)
        try:
            stub = daemon.generation()
            info = stub.GetModelInfo(pb.GetModelInfoRequest())
            self.assertIn("cpu:0,cpu:1 [0, 2) + embedding; cpu:2,cpu:3 [2, 5) + head",
                          info.layout)
            assert_golden_staggered(self, stub, ["a", "b", "a", "b", "b"])
        finally:
            self.assertEqual(daemon.stop(), 0)


def main():
    global DAEMON
    DAEMON = Daemon(flags=["--slots=8", "--queue_size=64"])
    try:
        DAEMON.start(timeout=300)
    except DaemonError as e:
        if "not merged yet" in str(e) or "built without engine/tokenizer" in str(e):
            print("skipped: this build has no engine or tokenizer yet\n" + str(e))
            sys.exit(77)
        raise
    try:
        result = unittest.main(verbosity=2, exit=False).result
    finally:
        rc = DAEMON.stop()
    if rc != 0:
        print(DAEMON.logs())
    sys.exit(0 if result.wasSuccessful() and rc == 0 else 1)


if __name__ == "__main__":
    main()
