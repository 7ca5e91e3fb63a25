"""Drives tests/metrics_demo (the real exporter with the daemon's metric set):
start it, set values over its stdin, scrape /metrics over HTTP."""

import subprocess
import urllib.error
import urllib.request


class DemoExporter:
    def __init__(self, binary):
        self._proc = subprocess.Popen(
            [binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        first = self._proc.stdout.readline().split()
        if len(first) != 2 or first[0] != "port":
            self.close()
            raise RuntimeError(f"metrics demo did not start: {first!r}")
        self.port = int(first[1])
        self.address = f"127.0.0.1:{self.port}"

    def _command(self, verb, name, labels, value):
        label_text = ",".join(f"{k}={v}" for k, v in labels.items()) if labels else "-"
        self._proc.stdin.write(f"{verb} {name} {label_text} {value!r}\n")
        self._proc.stdin.flush()
        answer = self._proc.stdout.readline().strip()
        if answer != "ok":
            raise RuntimeError(f"{verb} {name} {label_text} {value}: {answer}")

    def inc(self, name, value=1, **labels):
        self._command("inc", name, labels, float(value))

    def set(self, name, value, **labels):
        self._command("set", name, labels, float(value))

    def observe(self, name, value, **labels):
        self._command("observe", name, labels, float(value))

    def close(self):
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def scrape(address, path="/metrics"):
    """(status, content type, body) of GET http://address/path."""
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=10) as response:
            return (response.status, response.headers.get("Content-Type"),
                    response.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode("utf-8", "replace")
