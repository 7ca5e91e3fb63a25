"""A real Prometheus server for tests: loopback only, a generated config that
scrapes given targets every second, storage in a temporary directory."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrometheusServer:
    def __init__(self, targets, job="moegraph", binary="prometheus", ready_timeout=60,
                 rule_files=()):
        """rule_files: {file name: YAML text} of rules to load, evaluated every second."""
        self._dir = tempfile.mkdtemp(prefix="moegraph-prometheus-")
        config = os.path.join(self._dir, "prometheus.yml")
        rules = ""
        for name, text in dict(rule_files).items():
            with open(os.path.join(self._dir, name), "w") as f:
                f.write(text)
            rules += f"  - {name}\n"
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "  evaluation_interval: 1s\n"
                    + (f"rule_files:\n{rules}" if rules else "") +
                    f"scrape_configs:\n  - job_name: {job}\n    static_configs:\n"
                    f"      - targets: [{', '.join(repr(t) for t in targets)}]\n")
        self.address = f"127.0.0.1:{free_port()}"
        self._log = open(os.path.join(self._dir, "prometheus.log"), "w+")
        self._proc = subprocess.Popen(
            [binary, f"--config.file={config}",
             f"--storage.tsdb.path={os.path.join(self._dir, 'data')}",
             f"--web.listen-address={self.address}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + ready_timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self._proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"http://{self.address}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus not ready in {ready_timeout}s:\n{self.log()}")
            time.sleep(0.2)

    def query(self, promql):
        """The instant vector of `promql`: {frozenset(labels without __name__): value}."""
        url = f"http://{self.address}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as r:
            answer = json.load(r)
        if answer.get("status") != "success":
            raise RuntimeError(f"query {promql}: {answer}")
        result = {}
        for sample in answer["data"]["result"]:
            labels = {k: v for k, v in sample["metric"].items() if k != "__name__"}
            result[frozenset(labels.items())] = float(sample["value"][1])
        return result

    def wait_for(self, expected, timeout=60):
        """Queries each {promql: {frozenset(labels): value}} of `expected` until
        its result equals the expected one; prints each as it matches. Returns
        the ones that never matched, with what was last seen, as {promql:
        (wanted, got)}."""
        deadline = time.monotonic() + timeout
        pending, got = dict(expected), {}
        while pending:
            for promql in list(pending):
                got[promql] = self.query(promql)
                want = pending[promql]
                if got[promql].keys() == want.keys() and all(
                        abs(got[promql][k] - want[k]) < 1e-9 for k in want):
                    values = sorted(got[promql].values())
                    print(f"ok  {promql} -> {values if len(values) <= 4 else f'{len(values)} series'}")
                    del pending[promql]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        return {promql: (want, got.get(promql)) for promql, want in pending.items()}

    def log(self):
        self._log.flush()
        self._log.seek(0)
        return self._log.read()

    def close(self):
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
