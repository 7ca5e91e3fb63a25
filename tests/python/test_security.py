#!/usr/bin/env python3
"""TLS, mutual TLS and API keys on the gRPC listener, with certificates made
here by openssl: plaintext clients are refused by a TLS listener; with a
client CA only clients with a certificate it signed get in; replaced
certificate files take effect without a restart; with an API keys file every
call needs "authorization: Bearer KEY". Requests are namespaced by the
caller's identity: another caller can neither abort a request nor learn its
id is in use. Listening beyond loopback with neither TLS nor keys warns."""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Daemon, collect, daemon_binary, free_port, stubs  # noqa: E402

pb = stubs().generation_pb2
rpc = stubs().generation_pb2_grpc


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


class Pki:
    """A CA and certificates it signs, as PEM files in a temp directory."""

    def __init__(self, directory, name):
        self.dir, self.name = directory, name
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", name + "-ca.key", "-out", name + "-ca.pem", "-days", "2",
                "-subj", "/CN=%s test CA" % name, cwd=directory)
        self.ca = self.path(name + "-ca.pem")

    def path(self, f):
        return os.path.join(self.dir, f)

    def issue(self, stem, cn, server):
        ext = self.path(stem + ".ext")
        with open(ext, "w") as f:
            if server:
                f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
            else:
                f.write("extendedKeyUsage=clientAuth\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", stem + ".key", "-out", stem + ".csr", "-subj", "/CN=" + cn,
                cwd=self.dir)
        openssl("x509", "-req", "-in", stem + ".csr", "-CA", self.name + "-ca.pem", "-CAkey",
                self.name + "-ca.key", "-CAcreateserial", "-out", stem + ".pem", "-days", "2",
                "-extfile", stem + ".ext", cwd=self.dir)
        return self.path(stem + ".pem"), self.path(stem + ".key")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def request(request_id, max_tokens=2):
    req = pb.GenerateRequest(request_id=request_id, token_ids=pb.TokenIds(ids=[3, 4]))
    req.stopping.max_tokens = max_tokens
    req.stopping.ignore_eos = True
    return req


def generate_ok(test, channel, metadata=None):
    ids, _, final, _ = collect(rpc.GenerationStub(channel).Generate(request(""), timeout=10,
                                                                  metadata=metadata))
    test.assertEqual(len(ids), 2)
    test.assertEqual(final.finish_reason, pb.FINISH_REASON_LENGTH)


class SecurityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="moegraph-pki-")
        cls.pki = Pki(cls.tmp, "one")
        cls.other = Pki(cls.tmp, "two")
        cls.server_cert, cls.server_key = cls.pki.issue("server", "localhost", True)
        cls.alice = cls.pki.issue("alice", "alice", False)
        cls.bob = cls.pki.issue("bob", "bob", False)
        cls.mallory = cls.other.issue("mallory", "alice", False)  # right name, wrong CA

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def creds(self, ca=None, client=None):
        key = read(client[1]) if client else None
        chain = read(client[0]) if client else None
        return grpc.ssl_channel_credentials(read(ca or self.pki.ca), key, chain)

    def test_tls_refuses_plaintext_clients(self):
        flags = ["--tls_cert_file=" + self.server_cert, "--tls_key_file=" + self.server_key]
        with Daemon(fake_engine=True, flags=flags, credentials=self.creds()) as d:
            generate_ok(self, d.channel())
            self.assertIn("(port %d, TLS)" % d.port, d.logs())
            with grpc.insecure_channel(d.address) as plain:
                with self.assertRaises(grpc.RpcError) as ctx:
                    rpc.GenerationStub(plain).GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
                self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAVAILABLE)
            # A client that trusts another CA does not trust this server.
            with grpc.secure_channel(d.address, self.creds(ca=self.other.ca)) as wrong:
                with self.assertRaises(grpc.RpcError):
                    rpc.GenerationStub(wrong).GetModelInfo(pb.GetModelInfoRequest(), timeout=5)

    def test_mutual_tls_requires_a_client_certificate_from_the_ca(self):
        flags = ["--tls_cert_file=" + self.server_cert, "--tls_key_file=" + self.server_key,
                 "--tls_client_ca_file=" + self.pki.ca, "--fake-step-ms=5",
                 "--context_limit=100000", "--sampling.max_tokens=50000"]
        with Daemon(fake_engine=True, flags=flags, credentials=self.creds(client=self.alice)) as d:
            self.assertIn("(port %d, mutual TLS)" % d.port, d.logs())
            for client in (None, self.mallory):
                with grpc.secure_channel(d.address, self.creds(client=client)) as ch:
                    with self.assertRaises(grpc.RpcError) as ctx:
                        rpc.GenerationStub(ch).GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
                    self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAVAILABLE)
            alice = d.channel()
            with grpc.secure_channel(d.address, self.creds(client=self.bob)) as bob:
                self.check_namespaces(rpc.GenerationStub(alice), rpc.GenerationStub(bob), None,
                                      None)

    def check_namespaces(self, alice, bob, alice_md, bob_md):
        job = alice.Generate(request("job", 40000), timeout=60, metadata=alice_md)
        next(job)
        # Bob can neither abort Alice's request nor learn that its id is in use.
        self.assertFalse(bob.Abort(pb.AbortRequest(request_id="job"), timeout=5,
                                   metadata=bob_md).found)
        ids, _, final, _ = collect(bob.Generate(request("job"), timeout=10, metadata=bob_md))
        self.assertEqual(final.finish_reason, pb.FINISH_REASON_LENGTH)
        # Alice's own second "job" is ALREADY_EXISTS, and her Abort reaches it.
        with self.assertRaises(grpc.RpcError) as ctx:
            collect(alice.Generate(request("job"), timeout=10, metadata=alice_md))
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.ALREADY_EXISTS)
        self.assertTrue(alice.Abort(pb.AbortRequest(request_id="job"), timeout=5,
                                    metadata=alice_md).found)
        _, _, final, _ = collect(job)
        self.assertEqual(final.finish_reason, pb.FINISH_REASON_ABORT)

    def test_replaced_certificates_apply_without_a_restart(self):
        cert, key = os.path.join(self.tmp, "live.pem"), os.path.join(self.tmp, "live.key")
        shutil.copy(self.server_cert, cert)
        shutil.copy(self.server_key, key)
        flags = ["--tls_cert_file=" + cert, "--tls_key_file=" + key, "--tls_reload_seconds=1"]
        with Daemon(fake_engine=True, flags=flags, credentials=self.creds()) as d:
            generate_ok(self, d.channel())
            new_cert, new_key = self.other.issue("server2", "localhost", True)
            shutil.copy(new_key, key + ".tmp")
            shutil.copy(new_cert, cert + ".tmp")
            os.replace(key + ".tmp", key)
            os.replace(cert + ".tmp", cert)
            deadline = time.monotonic() + 15
            while True:
                try:
                    with grpc.secure_channel(d.address, self.creds(ca=self.other.ca)) as ch:
                        generate_ok(self, ch)
                    break
                except grpc.RpcError:
                    self.assertLess(time.monotonic(), deadline, d.logs()[-2000:])
                    time.sleep(0.3)
            # New connections now get the new certificate, which the old CA did not sign.
            with grpc.secure_channel(d.address, self.creds()) as ch:
                with self.assertRaises(grpc.RpcError):
                    rpc.GenerationStub(ch).GetModelInfo(pb.GetModelInfoRequest(), timeout=5)

    def test_api_keys(self):
        keys = os.path.join(self.tmp, "keys")
        with open(keys, "w") as f:
            f.write("# name sha256\nalice %s\nbob %s\n" % (
                hashlib.sha256(b"secret-a").hexdigest(), hashlib.sha256(b"secret-b").hexdigest()))
        flags = ["--api_keys_file=" + keys, "--fake-step-ms=5", "--context_limit=100000",
                 "--sampling.max_tokens=50000"]
        with Daemon(fake_engine=True, flags=flags) as d:
            self.assertIn("(port %d, plaintext, API keys)" % d.port, d.logs())
            stub = d.generation()
            for md, message in ((None, "this server requires an API key: send metadata "
                                       "\"authorization: Bearer KEY\""),
                                ([("authorization", "Bearer nope")], "unknown API key"),
                                ([("authorization", "secret-a")], "this server requires an API "
                                 "key: send metadata \"authorization: Bearer KEY\"")):
                for call in (lambda: collect(stub.Generate(request("x"), timeout=5, metadata=md)),
                             lambda: stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5,
                                                       metadata=md),
                             lambda: stub.Abort(pb.AbortRequest(request_id="x"), timeout=5,
                                                metadata=md)):
                    with self.assertRaises(grpc.RpcError) as ctx:
                        call()
                    self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
                    self.assertEqual(ctx.exception.details(), message)
            alice_md = [("authorization", "Bearer secret-a")]
            bob_md = [("authorization", "Bearer secret-b")]
            generate_ok(self, d.channel(), alice_md)
            self.check_namespaces(stub, stub, alice_md, bob_md)

    def test_listening_beyond_loopback_without_security_warns(self):
        d = Daemon(fake_engine=True)
        d.args.append("--listen_address=0.0.0.0:%d" % d.port)
        with d:
            self.assertIn("listening on 0.0.0.0:%d beyond loopback without TLS or API keys" % d.port,
                          d.logs())
        with Daemon(fake_engine=True) as d:
            self.assertNotIn("beyond loopback", d.logs())

    def test_bad_security_config_fails_start_up(self):
        base = [daemon_binary(), "--fake-engine", "--metrics_address=",
                "--listen_address=127.0.0.1:%d" % free_port()]
        missing = os.path.join(self.tmp, "missing.pem")
        for flags, code, message in (
                (["--tls_cert_file=" + self.server_cert], 2,
                 "tls_cert_file, tls_key_file: give both (TLS) or neither (plaintext)"),
                (["--tls_cert_file=" + missing, "--tls_key_file=" + self.server_key], 1,
                 "tls_cert_file: cannot read %s: No such file or directory" % missing),
                (["--api_keys_file=" + self.server_cert], 1,
                 "api_keys_file: %s line 1: expected \"NAME SHA256\"" % self.server_cert)):
            run = subprocess.run(base + flags, capture_output=True, text=True, timeout=30)
            self.assertEqual(run.returncode, code, run.stdout + run.stderr)
            self.assertIn(message, run.stdout + run.stderr)


if __name__ == "__main__":
    unittest.main()
