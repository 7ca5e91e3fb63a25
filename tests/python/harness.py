"""Test harness for moegraphd: Python stubs compiled from proto/ at run time,
and a Daemon that starts moegraphd on free loopback ports with a given YAML
config and flags, waits until the health service reports it ready, and stops
it with SIGTERM (collecting its log).

Environment: MOEGRAPH_BUILD_DIR (default: <repo>/build) locates moegraphd;
MOEGRAPH_DAEMON overrides the binary. Needs Debian's python3-grpcio and
python3-grpc-tools (run tests with /usr/bin/python3).

    from harness import Daemon, stubs
    with Daemon(flags=["--slots=2"]) as d:
        pb, rpc = stubs().generation_pb2, stubs().generation_pb2_grpc
        stub = rpc.GenerationStub(d.channel())
"""

import atexit
import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types

import grpc

SOURCE_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("MOEGRAPH_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
TINY_MODEL = os.path.join(SOURCE_DIR, "tests", "fixtures", "dsv4-tiny")
SERVICE = "moegraph.v1.Generation"

_PROTOS = [
    (os.path.join(SOURCE_DIR, "proto"), "moegraph/v1/generation.proto"),
    (os.path.join(SOURCE_DIR, "proto"), "grpc/health/v1/health.proto"),
    (os.path.join(os.path.dirname(os.path.abspath(__file__)), "protos"),
     "grpc/reflection/v1alpha/reflection.proto"),
]
_stubs = None
_stub_lock = threading.Lock()


def _temp_dir(prefix):
    """A temporary directory removed when the process exits (set
    MOEGRAPH_KEEP_TEMP=1 to keep daemon logs and configs for a look)."""
    path = tempfile.mkdtemp(prefix=prefix)
    if not os.environ.get("MOEGRAPH_KEEP_TEMP"):
        atexit.register(shutil.rmtree, path, True)
    return path


def stubs():
    """Compiles the protos once per process into a temporary directory and
    returns a namespace: generation_pb2, generation_pb2_grpc, health_pb2,
    health_pb2_grpc, reflection_pb2, reflection_pb2_grpc."""
    global _stubs
    with _stub_lock:
        if _stubs is not None:
            return _stubs
        from grpc_tools import protoc  # python3-grpc-tools

        out = _temp_dir("moegraph-stubs-")
        ns = types.SimpleNamespace(dir=out)
        # Each file is compiled from its own directory, so the modules are
        # top-level (generation_pb2, ...): a "grpc" package would shadow grpcio.
        # None of these protos imports another.
        for include, rel in _PROTOS:
            path = os.path.join(include, rel)
            args = ["grpc_tools.protoc", "-I" + os.path.dirname(path), "--python_out=" + out,
                    "--grpc_python_out=" + out, path]
            if protoc.main(args) != 0:
                raise RuntimeError("protoc failed on " + rel)
        sys.path.insert(0, out)
        for _, rel in _PROTOS:
            base = os.path.basename(rel)[:-len(".proto")]
            setattr(ns, base + "_pb2", importlib.import_module(base + "_pb2"))
            setattr(ns, base + "_pb2_grpc", importlib.import_module(base + "_pb2_grpc"))
        _stubs = ns
        return ns


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def daemon_binary():
    return os.environ.get("MOEGRAPH_DAEMON", os.path.join(BUILD_DIR, "moegraphd"))


class DaemonError(RuntimeError):
    pass


class Daemon:
    """One moegraphd process.

    config_yaml: YAML text written to a temporary file and passed as --config.
    flags: extra command-line flags (they override the YAML).
    fake_engine: serve the deterministic stand-in model (no weights); with
        MOEGRAPH_FAKE_PIPELINED=1 in the environment it pipelines its steps
        as a GPU engine does (--fake-pipelined). With MOEGRAPH_CPU_PIPELINED=1
        the real engine on the CPU samples on its backend and pipelines its
        steps as on a GPU (--cpu-pipelined).
    The gRPC and metrics ports are picked here unless the flags set them.
    """

    def __init__(self, config_yaml=None, flags=(), fake_engine=False, model_dir=TINY_MODEL,
                 metrics=True, log_level="info", credentials=None, metadata=None):
        self.tmp = _temp_dir("moegraphd-")
        self.port = free_port()
        self.address = "127.0.0.1:%d" % self.port
        self.metrics_port = free_port() if metrics else None
        self.metrics_address = ("127.0.0.1:%d" % self.metrics_port) if metrics else ""
        self.log_path = os.path.join(self.tmp, "moegraphd.log")
        args = [daemon_binary()]
        if config_yaml is not None:
            path = os.path.join(self.tmp, "moegraphd.yaml")
            with open(path, "w") as f:
                f.write(config_yaml)
            args += ["--config", path]
        args += ["--listen_address=" + self.address, "--metrics_address=" + self.metrics_address,
                 "--model_dir=" + model_dir, "--log_level=" + log_level]
        if fake_engine:
            args.append("--fake-engine")
            if os.environ.get("MOEGRAPH_FAKE_PIPELINED"):
                args.append("--fake-pipelined")
        elif os.environ.get("MOEGRAPH_CPU_PIPELINED"):
            args.append("--cpu-pipelined")
        args += list(flags)
        self.args = args
        self.proc = None
        # grpc.ChannelCredentials for a TLS listener, and call metadata (an API
        # key) for the health checks; None: plaintext, none.
        self.credentials = credentials
        self.metadata = metadata
        self._channel = None
        self.returncode = None

    # -- lifecycle ---------------------------------------------------------
    def start(self, timeout=120):
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=SOURCE_DIR)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=120):
        """Waits until Health.Check(moegraph.v1.Generation) says SERVING."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DaemonError("moegraphd exited with %d before it was ready:\n%s"
                                  % (self.proc.returncode, self.logs()))
            if self.health(SERVICE, timeout=1.0) == "SERVING":
                return
            time.sleep(0.05)
        raise DaemonError("moegraphd not ready after %.0f s:\n%s" % (timeout, self.logs()))

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Sends `sig` and waits for the exit; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise DaemonError("moegraphd did not exit within %.0f s of %s:\n%s"
                                  % (timeout, signal.Signals(sig).name, self.logs()))
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        self._log.close()
        self.returncode = self.proc.returncode
        return self.returncode

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def wait(self, timeout=60):
        return self.proc.wait(timeout)

    def logs(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- clients -------------------------------------------------------------
    def open_channel(self):
        """A new channel to the daemon, with its credentials when it speaks TLS."""
        if self.credentials is not None:
            return grpc.secure_channel(self.address, self.credentials)
        return grpc.insecure_channel(self.address)

    def channel(self):
        if self._channel is None:
            self._channel = self.open_channel()
        return self._channel

    def generation(self):
        return stubs().generation_pb2_grpc.GenerationStub(self.channel())

    def health(self, service="", timeout=5.0):
        """The serving status name ("SERVING", "NOT_SERVING", ...) or None if
        the daemon does not answer."""
        s = stubs()
        try:
            with self.open_channel() as ch:
                stub = s.health_pb2_grpc.HealthStub(ch)
                r = stub.Check(s.health_pb2.HealthCheckRequest(service=service), timeout=timeout,
                               metadata=self.metadata)
                return s.health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return "SERVICE_UNKNOWN"
            return None

    def metrics_text(self, timeout=5.0):
        import urllib.request
        with urllib.request.urlopen("http://%s/metrics" % self.metrics_address,
                                    timeout=timeout) as r:
            return r.read().decode()


def collect(stream):
    """Drains a Generate stream: (token_ids, text, final, chunks)."""
    ids, text, final, chunks = [], "", None, []
    for msg in stream:
        kind = msg.WhichOneof("kind")
        if kind == "chunk":
            chunks.append(msg.chunk)
            ids.extend(msg.chunk.token_ids)
            text += msg.chunk.text
        elif kind == "final":
            if final is not None:
                raise AssertionError("two final messages")
            final = msg.final
    return ids, text, final, chunks


def golden():
    import json
    with open(os.path.join(TINY_MODEL, "golden.json")) as f:
        return json.load(f)
