#!/usr/bin/env python3
"""The multi-node bootstrap as separate processes on one host (`moegraph
cluster-bootstrap`, one per node, workers started before the leader): every
node gets the same group id; a node with another layout or checkpoint is
refused naming the field, and the leader names the node that never joined;
a LeaderWorkerSet's environment stands in for the flags."""

import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import BUILD_DIR, free_port  # noqa: E402

CLI = os.environ.get("MOEGRAPH_CLI", os.path.join(BUILD_DIR, "moegraph"))
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
TINY = os.path.join(FIXTURES, "dsv4-tiny")


def node(index, nodes, port, *extra, model=TINY, env=None):
    return subprocess.Popen(
        [CLI, "cluster-bootstrap", "--model-dir", model, "--leader", f"127.0.0.1:{port}",
         "--nodes", str(nodes), "--node", str(index), "--timeout", "20", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(procs):
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=60)
        out.append((p.returncode, stdout, stderr))
    return out


class ClusterBootstrapTest(unittest.TestCase):
    def test_four_nodes_share_one_id(self):
        port = free_port()
        procs = [node(i, 4, port) for i in (3, 1, 2)]
        procs.append(node(0, 4, port))
        ids = set()
        for rc, stdout, stderr in finish(procs):
            self.assertEqual(rc, 0, stderr)
            m = re.search(r"node (\d) of 4: joined; group id 128 bytes, begins ([0-9a-f]{16})",
                          stdout)
            self.assertIsNotNone(m, stdout)
            ids.add(m.group(2))
        self.assertEqual(len(ids), 1)

    def test_mismatch_is_refused_and_the_leader_names_the_missing_node(self):
        port = free_port()
        procs = [node(1, 3, port), node(2, 3, port, "--layout", "layers"),
                 node(0, 3, port, "--timeout", "3")]
        (w1, w2, leader) = finish(procs)
        self.assertEqual(w2[0], 1)
        self.assertIn("layout: leader 'ep', node 2 'layers'", w2[2])
        self.assertEqual(leader[0], 1)
        self.assertIn("node(s) 2 did not join", leader[2])
        self.assertNotEqual(w1[0], 0)  # the group never formed

    def test_another_checkpoint_is_refused(self):
        port = free_port()
        procs = [node(1, 2, port, model=os.path.join(FIXTURES, "dsv4-topk2")),
                 node(0, 2, port, "--timeout", "3")]
        (worker, leader) = finish(procs)
        self.assertEqual(worker[0], 1)
        self.assertIn("model_fingerprint", worker[2])
        self.assertEqual(leader[0], 1)

    def test_leaderworkerset_environment(self):
        port = free_port()
        procs = []
        for index in (1, 0):
            env = dict(os.environ, LWS_GROUP_SIZE="2", LWS_WORKER_INDEX=str(index))
            procs.append(subprocess.Popen(
                [CLI, "cluster-bootstrap", "--model-dir", TINY, "--leader",
                 f"127.0.0.1:{port}", "--timeout", "20"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
        for rc, stdout, stderr in finish(procs):
            self.assertEqual(rc, 0, stderr)
            self.assertIn("of 2: joined", stdout)

    def test_bad_flags(self):
        r = subprocess.run([CLI, "cluster-bootstrap", "--model-dir", TINY, "--leader", "x:1",
                            "--nodes", "2", "--node", "2"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--node: must be in [0, 1], got 2", r.stderr)
        r = subprocess.run([CLI, "cluster-bootstrap", "--model-dir", TINY, "--leader", "x:1",
                            "--layout", "ring"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--layout: must be one of ep, layers, ep+layers", r.stderr)
        for devices, msg in (("cuda:0,cuda:0", "cuda:0 appears twice"),
                             ("gpu1", "'gpu1' must list cuda:N entries")):
            r = subprocess.run([CLI, "cluster-bootstrap", "--model-dir", TINY, "--leader", "x:1",
                                "--nccl-devices", devices], capture_output=True, text=True)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(msg, r.stderr)
        r = subprocess.run([CLI, "cluster-bootstrap", "--model-dir", TINY, "--leader", "x:1",
                            "--nccl-devices", "cuda:0,cuda:1", "--gpus-per-node", "4"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--gpus-per-node: 4 but --nccl-devices lists 2", r.stderr)

    def test_nccl_group_without_a_gpu_is_a_clear_error(self):
        # This machine (CI) has no GPU: a CUDA build forms the group with
        # NCCL's id, then fails creating the communicator, naming CUDA; a
        # build without CUDA refuses the flag. Either way no hang, no crash.
        port = free_port()
        (rc, stdout, stderr), = finish([node(0, 1, port, "--nccl-devices", "cuda:0")])
        if "needs a build with CUDA" in stderr:
            self.assertEqual(rc, 2)
            return
        self.assertIn("node 0 of 1: joined; group id 128 bytes", stdout)
        if rc == 0:  # a machine with a GPU: the one-rank group works
            self.assertIn("NCCL ranks 0-0 of 1 up", stdout)
            self.assertIn("all-reduce of rank + 1 gave 1", stdout)
            return
        self.assertEqual(rc, 1, stdout + stderr)
        self.assertIn("moegraph cluster-bootstrap: CUDA", stderr)


if __name__ == "__main__":
    unittest.main()
