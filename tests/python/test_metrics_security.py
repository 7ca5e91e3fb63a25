#!/usr/bin/env python3
"""The /metrics endpoint's protection, scraped over real HTTP: with
metrics_basic_auth_file a scrape needs a listed user and password (401
otherwise); listening beyond loopback without it warns; a bad users file, and
metrics TLS (which Debian 12's civetweb cannot serve), stop start-up with a
message naming the key."""

import base64
import hashlib
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Daemon, daemon_binary, free_port  # noqa: E402


def scrape(d, user=None, password=None):
    """(status, headers, body) of GET /metrics, with basic auth when given."""
    conn = http.client.HTTPConnection("127.0.0.1", d.metrics_port, timeout=10)
    headers = {}
    if user is not None:
        token = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        headers["Authorization"] = "Basic " + token
    try:
        conn.request("GET", "/metrics", headers=headers)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode()
    finally:
        conn.close()


class MetricsSecurityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="moegraph-metrics-security-")
        cls.users = os.path.join(cls.tmp, "users")
        with open(cls.users, "w") as f:
            f.write("# user sha256(password)\nprometheus %s\nbackup %s\n" % (
                hashlib.sha256(b"scrape-secret").hexdigest(),
                hashlib.sha256(b"other-secret").hexdigest()))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_basic_auth_admits_only_listed_users(self):
        with Daemon(fake_engine=True, flags=["--metrics_basic_auth_file=" + self.users]) as d:
            self.assertIn("basic auth required", d.logs())
            status, headers, body = scrape(d)
            self.assertEqual(status, 401)
            self.assertEqual(headers.get("WWW-Authenticate"), 'Basic realm="moegraph metrics"')
            self.assertNotIn("moegraph_", body)
            for user, password in (("prometheus", "wrong"), ("prometheus", ""),
                                   ("nobody", "scrape-secret"), ("backup", "scrape-secret"),
                                   ("prometheus", "scrape-secret\n")):
                self.assertEqual(scrape(d, user, password)[0], 401, (user, password))
            for user, password in (("prometheus", "scrape-secret"), ("backup", "other-secret")):
                status, _, body = scrape(d, user, password)
                self.assertEqual(status, 200)
                self.assertIn("\nmoegraph_requests_waiting 0\n", body)
            if shutil.which("curl"):
                url = "http://127.0.0.1:%d/metrics" % d.metrics_port
                for args, code in (([], "401"), (["-u", "prometheus:wrong"], "401"),
                                   (["-u", "prometheus:scrape-secret"], "200")):
                    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"]
                                         + args + [url], capture_output=True, text=True,
                                         timeout=30)
                    self.assertEqual(out.stdout, code, args)

    def test_no_auth_by_default_on_loopback(self):
        with Daemon(fake_engine=True) as d:
            self.assertEqual(scrape(d)[0], 200)
            self.assertNotIn("without metrics_basic_auth_file", d.logs())

    def test_metrics_beyond_loopback_without_auth_warns(self):
        d = Daemon(fake_engine=True)
        d.args.append("--metrics_address=0.0.0.0:%d" % d.metrics_port)
        with d:
            self.assertIn("metrics on 0.0.0.0:%d beyond loopback without metrics_basic_auth_file"
                          % d.metrics_port, d.logs())
        d = Daemon(fake_engine=True, flags=["--metrics_basic_auth_file=" + self.users])
        d.args.append("--metrics_address=0.0.0.0:%d" % d.metrics_port)
        with d:
            self.assertNotIn("beyond loopback", d.logs())
            self.assertEqual(scrape(d)[0], 401)

    def test_bad_metrics_security_config_fails_start_up(self):
        base = [daemon_binary(), "--fake-engine", "--metrics_address=127.0.0.1:%d" % free_port(),
                "--listen_address=127.0.0.1:%d" % free_port()]
        plain = os.path.join(self.tmp, "plain")
        with open(plain, "w") as f:
            f.write("prometheus scrape-secret\n")
        missing = os.path.join(self.tmp, "missing")
        for flags, code, message in (
                (["--metrics_basic_auth_file=" + plain], 1,
                 "metrics_basic_auth_file: %s line 1: expected \"USER SHA256\" (the password's "
                 "SHA-256 as 64 lowercase hex digits)" % plain),
                (["--metrics_basic_auth_file=" + missing], 1,
                 "metrics_basic_auth_file: cannot open %s: No such file or directory" % missing),
                (["--metrics_tls_cert_file=" + plain], 2,
                 "metrics_tls_cert_file: TLS on /metrics is not available: Debian 12's civetweb "
                 "1.15 looks up SSL_get_peer_certificate, which OpenSSL 3 does not export")):
            run = subprocess.run(base + flags, capture_output=True, text=True, timeout=30)
            self.assertEqual(run.returncode, code, run.stdout + run.stderr)
            self.assertIn(message, run.stdout + run.stderr)


if __name__ == "__main__":
    unittest.main()
