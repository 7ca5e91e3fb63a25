#!/usr/bin/env python3
"""deploy/prometheus/ through promtool: `check config` on prometheus.yml
(which loads both rule files), `check rules` on each, and `test rules` on
rules_test.yml, whose cases give every recording rule series with known
values and every alert a firing and a quiet case. Exits 77 without promtool.
"""

import os
import shutil
import subprocess
import sys

DEPLOY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy",
                      "prometheus")


def main():
    promtool = shutil.which("promtool")
    if promtool is None:
        print("SKIP: promtool not found (Debian's prometheus package)")
        return 77
    failed = 0
    for args in (["check", "config", "prometheus.yml"],
                 ["check", "rules", "recording_rules.yml", "alert_rules.yml"],
                 ["test", "rules", "rules_test.yml"]):
        run = subprocess.run([promtool] + args, cwd=DEPLOY, capture_output=True, text=True,
                             timeout=120)
        out = (run.stdout + run.stderr).strip()
        print(f"promtool {' '.join(args)}: exit {run.returncode}\n{out}\n")
        if run.returncode != 0:
            failed += 1
    # The test cases must cover every rule: a rule nobody tests could be wrong.
    with open(os.path.join(DEPLOY, "rules_test.yml")) as f:
        cases = f.read()
    for name in ("recording_rules.yml", "alert_rules.yml"):
        with open(os.path.join(DEPLOY, name)) as f:
            for line in f:
                word = line.strip().split(":", 1)
                if word[0] in ("- record", "- alert"):
                    rule = word[1].strip()
                    if f"expr: {rule}" not in cases and f"alertname: {rule}" not in cases:
                        print(f"FAIL: {name}: {rule} has no case in rules_test.yml")
                        failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
