"""The PyFlink stream job on a real local Flink mini-cluster (the Flink venv: `make flink-venv`) against a real
Ray Serve gateway with tiny models: BBC articles in, one committed output or dead letter per record out, through
injected 429s, a gateway restart, and a job killed with SIGKILL and restored from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from support.serve import SERVE_ADDRESSES, free_port, gateway_fixture
from support.stream_proxy import FaultProxy
from support.tiny_models import build_tiny_classifier

from serve_app.builders.bbc import load_articles
from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.optimize.build import build_variant
from serve_app.optimize.edge import write_bundle
from serve_app.optimize.plan import make_plan
from serve_app.stream.cli import flink_python, job_command, job_env
from serve_app.stream.outputs import Tally

JOB_TIMEOUT_S = 240


def gateway_config(tiny_models: Path, onnx_dir: Path):
    return parse_config({
        "server": {"limits": {"max_texts": 16, "max_text_chars": 100000}},
        "models": [
            {"name": "tiny-clf", "task": "classification", "source": "tiny-classifier", "max_length": 32,
             "batching": {"max_batch_size": 8, "batch_wait_timeout_s": 0.01},
             "resources": {"num_cpus": 0.1, "num_gpus": 0}},
            {"name": "tiny-onnx", "task": "classification", "source": str(onnx_dir), "runtime": "onnx",
             "max_length": 32, "batching": {"max_batch_size": 8, "batch_wait_timeout_s": 0.01},
             "resources": {"num_cpus": 0.1, "num_gpus": 0, "threads": 1}},
        ],
    }, settings=GatewaySettings(models_dir=tiny_models))


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    """An fp32 ONNX export of a tiny classifier whose labels vary with the text (served, and edge-bundled)."""
    root = tmp_path_factory.mktemp("stream-onnx")
    parent = build_tiny_classifier(root / "parent", seed=5, initializer_range=0.5)
    out = root / "onnx"
    out.mkdir()
    build_variant(parent, make_plan("classification", runtime="onnx"), "classification", out)
    return out


def has_flink_venv(base: str) -> None:
    assert flink_python().is_file(), f"no Flink venv at {flink_python()}: run `make flink-venv`"


gateway = gateway_fixture(gateway_config, timeout=None, ready=has_flink_venv)


@pytest.fixture(scope="module")
def articles():
    return load_articles()[:500]


def write_jsonl(path: Path, articles, extra: list[str] = ()) -> Path:
    lines = [json.dumps({"id": a.id, "text": a.text}) for a in articles] + list(extra)
    path.write_text("\n".join(lines) + "\n")
    return path


def start_job(args: list[str], log: Path) -> subprocess.Popen:
    # Its own session: a kill reaches the JVM and the Python workers, not only the driver.
    return subprocess.Popen(job_command(args), env=job_env(flink_python()), stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def run_job(args: list[str], out: Path) -> Tally:
    job = start_job(args, out.parent / f"{out.name}.log")
    assert job.wait(JOB_TIMEOUT_S) == 0, (out.parent / f"{out.name}.log").read_text()[-3000:]
    return Tally.of(out)


def version_of(base: str, model: str) -> str:
    return httpx.get(f"{base}/v1/models/{model}", timeout=30).json()["versions"][0]["version"]


def job_summary(out: Path) -> dict:
    """The enrichment operator's final counts (OUT/metrics/, written when it closes), summed over subtasks."""
    total: dict = {}
    for path in (out / "metrics").glob("enrich-*.json"):
        for k, v in json.loads(path.read_text()).items():
            if isinstance(v, int):
                total[k] = total.get(k, 0) + v
    return total


def test_500_articles_give_500_outputs_with_version_and_bad_records_are_dead_lettered(gateway, articles,
                                                                                        tmp_path):
    base = gateway
    bad = ["not json {", json.dumps({"id": "no-text"}), json.dumps([1, 2]),
           json.dumps({"id": "blank", "text": "   "}), json.dumps({"id": "number", "text": 7})]
    source = write_jsonl(tmp_path / "in.jsonl", articles, bad)
    out = tmp_path / "out"
    tally = run_job(["--source", str(source), "--out", str(out), "--gateway", base, "--model", "tiny-clf",
                     "--metrics-interval", "1"], out)
    assert len(tally.results) == 500 and {r["key"] for r in tally.results} == {a.id for a in articles}
    version = version_of(base, "tiny-clf")
    assert {(r["model"], r["version"], r["mode"]) for r in tally.results} == {("tiny-clf", version, "gateway")}
    assert all(r["result"]["label"] in ("alpha", "beta", "gamma") and r["latency_ms"] > 0 for r in tally.results)
    reasons = {d["key"]: d for d in tally.dead_letters}
    assert len(tally.dead_letters) == 5
    assert reasons["no-text"]["reason"] == "missing_field" and reasons["number"]["reason"] == "missing_field"
    assert [d["reason"] for d in tally.dead_letters if d["key"].startswith("sha256:")].count("invalid_json") == 1
    assert sum(d["reason"] == "not_an_object" for d in tally.dead_letters) == 1
    # The gateway's own 400, found by splitting the batch it was in: only the blank record is rejected.
    assert reasons["blank"]["reason"] == "rejected" and reasons["blank"]["status"] == 400
    assert "text is empty" in reasons["blank"]["error"]
    # The operator's counts agree: 501 records reached it (4 bad lines never did), 500 answered, 1 rejected.
    summary = job_summary(out)
    assert (summary["records_in"], summary["records_out"], summary["dead_letters"]) == (501, 500, 1)
    assert summary["requests"] >= 501 // 8
    # Flink's metric system: the slf4j reporter writes the job's metrics to its log.
    assert "gateway_stream.bad_records: 4" in "".join(p.read_text() for p in (out / "log").glob("*.log"))


def restart_gateway(base: str, config) -> None:
    """Stop Ray Serve (its HTTP proxy goes: connections are refused) and start it again on the same port."""
    from ray import serve

    from deployments.assemble import deploy, start_serve

    port = base.rsplit(":", 1)[1]
    grpc_port = int(SERVE_ADDRESSES["grpc"].rsplit(":", 1)[1])
    serve.shutdown()
    start_serve(config, "127.0.0.1", int(port), grpc_port)
    deploy(config)


def test_injected_429s_and_a_gateway_restart_lose_nothing(gateway, articles, tmp_path, tiny_models, onnx_dir):
    base = gateway
    source = write_jsonl(tmp_path / "in.jsonl", articles)
    out = tmp_path / "out"
    with FaultProxy(base, free_port(), reject_every=4, retry_after="0.1", delay_s=0.02) as proxy:
        job = start_job(["--source", str(source), "--out", str(out), "--gateway", proxy.url, "--model",
                         "tiny-clf", "--max-requests", "2"], tmp_path / "job.log")
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while proxy.forwarded_ok < 10 and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        answered_before = proxy.forwarded_ok
        restart_gateway(base, gateway_config(tiny_models, onnx_dir))
        assert job.wait(JOB_TIMEOUT_S) == 0, (tmp_path / "job.log").read_text()[-3000:]
    tally = Tally.of(out)
    assert 10 <= answered_before < proxy.forwarded_ok  # the restart came mid-stream
    assert proxy.injected_429 > 0 and proxy.upstream_failures > 0
    assert tally.dead_letters == [] and tally.lost({a.id for a in articles}) == set()
    assert len(tally.results) == 500 and tally.duplicates() == 0


def latest_checkpoint(folder: Path) -> Path | None:
    done = [p.parent for p in folder.glob("*/chk-*/_metadata")]
    return max(done, key=lambda p: int(p.name.split("-")[1])) if done else None


def test_a_killed_job_restored_from_its_checkpoint_loses_nothing(gateway, articles, tmp_path):
    base = gateway
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    write_jsonl(inbox / "a.jsonl", articles[:250])
    args = ["--source", str(inbox), "--watch", "0.5", "--out", str(out), "--model", "tiny-clf",
            "--checkpoint-interval", "1", "--max-requests", "1", "--batch-size", "4"]
    with FaultProxy(base, free_port(), delay_s=0.1) as proxy:  # ~40 records/s: the kill lands mid-stream
        first = start_job([*args, "--gateway", proxy.url], tmp_path / "first.log")
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while (len(Tally.of(out).results) < 40 or latest_checkpoint(out / "checkpoints") is None) \
                and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        write_jsonl(inbox / "b.jsonl", articles[250:])
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
        before = Tally.of(out)
        checkpoint = latest_checkpoint(out / "checkpoints")
        assert checkpoint is not None and 40 <= len(before.results) < 500, (tmp_path / "first.log").read_text()
        second = start_job([*args, "--gateway", proxy.url, "--restore", str(checkpoint)], tmp_path / "second.log")
        try:
            while len(Tally.of(out).keys()) < 500 and second.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            os.killpg(second.pid, signal.SIGKILL)
            second.wait(30)
    after = Tally.of(out)
    assert after.lost({a.id for a in articles}) == set(), (tmp_path / "second.log").read_text()[-3000:]
    assert after.dead_letters == []
    # Committed files are exactly once: the records replayed after the checkpoint were written once.
    assert after.duplicates() == 0


def test_the_edge_bundle_inside_flink_labels_like_the_gateway(gateway, onnx_dir, articles, tmp_path):
    base = gateway
    bundle = write_bundle(onnx_dir, tmp_path / "bundle", max_length=32, model="tiny-onnx", version="edge-1")
    some = articles[::5]
    source = write_jsonl(tmp_path / "in.jsonl", some)
    out = tmp_path / "out"
    tally = run_job(["--source", str(source), "--out", str(out), "--edge-bundle", str(bundle)], out)
    assert {(r["model"], r["version"], r["mode"]) for r in tally.results} == {("tiny-onnx", "edge-1", "edge")}
    edge = {r["key"]: r["result"]["label"] for r in tally.results}
    served = {}
    for i in range(0, len(some), 16):
        batch = some[i:i + 16]
        r = httpx.post(f"{base}/v1/classify", json={"model": "tiny-onnx", "texts": [a.text for a in batch]},
                       timeout=60)
        served.update({a.id: x["label"] for a, x in zip(batch, r.json()["results"])})
    assert len(edge) == len(some) and edge == served
    assert len(set(edge.values())) > 1  # the labels vary: agreeing is not trivial
