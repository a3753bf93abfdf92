"""`make bench` in smoke mode on tiny models: every target runs end to end over loopback (HTTP, OIP REST,
OIP gRPC, a naive uvicorn server, the LitServe and plain Ray Serve peers, the raw model, no-op hops, fan-out, the generation bench on the tiny summarizer) and
the report is written. No timing is asserted: on shared CI cores the figures mean nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from ray import serve
from support.serve import deployed, free_port
from support.tiny_models import build_tiny_classifier

from serve_app.bench import report
from serve_app.bench.__main__ import wait_http
from serve_app.bench.peers import plain_serve_app
from serve_app.bench.suite import BenchSettings, bench_models, run
from serve_app.config import parse_config
from serve_app.runtime.classifier import load_classifier

TEXTS = ["The bank raised rates.", "The striker scored twice.", "A new phone went on sale."]


def test_bench_smoke_runs_every_target_and_writes_the_report(serve_session, grpc_target, tiny_models, tmp_path):
    settings = BenchSettings.smoke()
    clf = build_tiny_classifier(tmp_path / "clf", seed=2)
    config = parse_config(bench_models({"source": str(clf)}, {"source": str(tiny_models / "tiny-summarizer")},
                                       settings))
    port, lit_port = free_port(), free_port()
    naive = subprocess.Popen([sys.executable, "-m", "serve_app.bench.naive_server", str(clf), "--port", str(port)])
    # LitServe runs its workers in child processes: a session of its own, so the whole group is stopped.
    lit = subprocess.Popen([sys.executable, "-m", "serve_app.bench.peers", "litserve", str(clf), "--port",
                            str(lit_port)], start_new_session=True)
    raw = load_classifier(clf, settings.max_length)
    try:
        with deployed(config):
            serve.run(plain_serve_app(str(clf), settings.max_length, num_cpus=0.05), name="plain",
                      route_prefix="/plain")
            wait_http(f"http://127.0.0.1:{port}/healthz", 120)
            wait_http(f"http://127.0.0.1:{lit_port}/health", 120)
            peers = {"LitServe": f"http://127.0.0.1:{lit_port}", "plain Ray Serve": f"{serve_session}/plain"}
            result = run(serve_session, grpc_target, f"http://127.0.0.1:{port}", lambda b: raw.predict(b, 32),
                         TEXTS, settings, tiny_models / "tiny-summarizer", peers=peers)
    finally:
        for proc in (naive, lit):
            if proc is lit:
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.terminate()
            proc.wait(30)
    targets = {"raw in-process", "gateway HTTP", "gateway OIP REST", "gateway OIP gRPC", "naive FastAPI", "LitServe", "plain Ray Serve"}
    assert set(result["sweep"]) == targets
    for target, by_c in result["sweep"].items():
        for c, samples in by_c.items():
            assert samples[0]["errors"] == 0 and samples[0]["requests"] > 0, (target, c, samples)
    assert set(result["hops"]["p50_ms_by_depth"]) == {1, 2, 3}
    [gen] = result["generation"]["repeats"]  # G1-G4, P5, P10, P11: the generation bench's rows, one per repeat
    assert gen["tokens"]["gateway_c8"] > 0 and gen["tokens"]["inproc_c8"] > 0 and gen["tokens"]["torch_c8"] > 0, gen
    assert gen["tokens_per_s"]["gateway_c1"] > 0 and gen["tokens_per_s"]["gateway_c8"] > 0, gen
    assert [t["id"] for t in result["targets"]] == ["P1", "P1-rest", "P1-grpc", "P3", "G1", "G2", "G3", "G4", "P5",
                                                    "P10", "P11", "P6", "P9", "P7-litserve", "P7-rayserve"]
    written = report.write(result, tmp_path / "bench", "test machine")
    assert {p.name for p in written} == {"bench.json", "bench.md", "throughput.png", "p99.png"}
    assert json.loads((tmp_path / "bench" / "bench.json").read_text())["targets"][0]["id"] == "P1"
    assert "| P1 |" in (tmp_path / "bench" / "bench.md").read_text()
    assert (tmp_path / "bench" / "throughput.png").read_bytes()[:4] == b"\x89PNG"
