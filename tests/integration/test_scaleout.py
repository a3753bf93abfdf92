"""A four-node Ray cluster on this machine (S1, S2 of the scale-out issue): the gateway deployed onto it with
`gateway node` and `gateway run --address`, its model pinned to the worker nodes, a worker killed with SIGKILL
under a steady open-loop load. Run as `make bench` runs it, in a process of its own (it is a Ray driver of that
cluster, beside this session's Ray), with the identity model: every answer must equal its input."""

from __future__ import annotations

import json
import subprocess
import sys

from support.serve import REPO


def test_a_worker_node_killed_under_load_loses_no_answer_and_the_model_comes_back(tmp_path):
    out = tmp_path / "scaleout.json"
    run = subprocess.run([sys.executable, "-m", "serve_app.bench.scaleout", "--short", "--seconds", "30",
                          "--json-out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    report = json.loads(out.read_text())["node_loss"]
    print("node loss:", report)
    assert report["statuses"].get("200", 0) > 0
    assert report["wrong"] == 0, report  # S1: no wrong answer
    assert report["failed"] <= report["in_flight_at_kill"], report  # S1: only what was in flight may fail
    assert report["recovery_s"] is not None and report["recovery_s"] <= 30, report  # S2
    assert report["replica_back_s"] is not None, report  # Ray placed the lost replica on the third worker
