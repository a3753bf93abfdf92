"""Pipelines on a real Ray Serve: fan-out concurrency, failure policies, timeouts and traces."""

from __future__ import annotations

import time

from support.serve import gateway_fixture
from support.tiny_models import TINY_LABELS

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings

CPU = {"num_cpus": 0.1, "num_gpus": 0}


def model(name, **kw):
    return {"type": "model", "model": name, **kw}


def gateway_config(tiny_models):
    return parse_config({
        "models": [
            {"name": "tiny-clf", "task": "classification", "source": "tiny-classifier", "max_length": 32,
             "resources": CPU},
            {"name": "tiny-sum", "task": "summarization", "source": "tiny-summarizer", "max_length": 64,
             "resources": CPU, "generation": {"max_new_tokens": 4, "max_new_tokens_limit": 8}},
            {"name": "sleepy", "task": "identity", "delay_ms": 200, "resources": CPU},
        ],
        "pipelines": [
            {"name": "fan3", "graph": {"type": "fanout", "branches": {
                "a": model("sleepy"), "b": model("sleepy"), "c": model("sleepy")}}},
            {"name": "best", "graph": {"type": "fanout", "policy": "best_effort", "min_success": 1,
                                       "branches": {"ok": model("tiny-clf"), "gone": model("tiny-clf@42")}}},
            {"name": "strict", "graph": {"type": "fanout",
                                         "branches": {"ok": model("tiny-clf"), "gone": model("tiny-clf@42")}}},
            {"name": "tight", "graph": model("sleepy", timeout_s=0.05)},
            {"name": "stc", "graph": {"type": "chain", "steps": [
                {"node": model("tiny-sum", params={"max_new_tokens": 3})},
                {"node": model("tiny-clf"), "input": "summary"}]}},
            {"name": "vote", "graph": {"type": "fuse", "method": "vote", "source": {"type": "fanout", "branches": {
                "x": model("tiny-clf"), "y": model("tiny-clf")}}}},
        ],
    }, settings=GatewaySettings(models_dir=tiny_models))


gateway = gateway_fixture(gateway_config)


def test_fanout_branches_run_concurrently(gateway):
    gateway.post("/v1/pipelines/fan3", json={"texts": ["warm up"]})
    started = time.perf_counter()
    r = gateway.post("/v1/pipelines/fan3", json={"texts": ["x"], "trace": True})
    elapsed = time.perf_counter() - started
    assert r.status_code == 200, r.text
    assert set(r.json()["results"][0]["branches"]) == {"a", "b", "c"}
    assert elapsed < 0.5, f"three 0.2 s branches took {elapsed:.2f} s: not concurrent"
    branch_ms = [e["latency_ms"] for e in r.json()["trace"] if e["type"] == "model"]
    assert len(branch_ms) == 3 and all(ms >= 200 for ms in branch_ms)


def test_best_effort_reports_the_failed_branch_and_fail_fast_fails(gateway):
    r = gateway.post("/v1/pipelines/best", json={"texts": ["x"]})
    assert r.status_code == 200, r.text
    result = r.json()["results"][0]
    assert set(result["branches"]) == {"ok"} and "not loaded" in result["failed_branches"]["gone"]
    r = gateway.post("/v1/pipelines/strict", json={"texts": ["x"]})
    assert r.status_code == 404 and "version 42 of 'tiny-clf' is not loaded" in r.json()["error"]


def test_node_timeout_is_a_504_naming_the_node(gateway):
    r = gateway.post("/v1/pipelines/tight", json={"texts": ["x"]})
    assert r.status_code == 504 and "node 'graph' timed out after 0.05 s" in r.json()["error"]


def test_chain_trace_names_models_versions_and_latencies(gateway):
    r = gateway.post("/v1/pipelines/stc", json={"texts": ["Markets rallied on Friday."], "trace": True})
    assert r.status_code == 200, r.text
    result = r.json()["results"][0]
    assert result["label"] in TINY_LABELS and isinstance(result["summary"], str)
    versions = {m["name"]: m["versions"][0]["version"] for m in gateway.get("/v1/models").json()["models"]}
    steps = {e["node"]: e for e in r.json()["trace"]}
    assert steps["graph.steps[0]"]["model"] == "tiny-sum" and steps["graph.steps[0]"]["version"] == versions["tiny-sum"]
    assert steps["graph.steps[1]"]["version"] == versions["tiny-clf"]
    assert steps["graph"]["latency_ms"] >= steps["graph.steps[0]"]["latency_ms"]


def test_vote_fusion_and_pipeline_listing(gateway):
    r = gateway.post("/v1/pipelines/vote", json={"texts": ["a", "b"]})
    assert r.status_code == 200 and all(x["label"] in TINY_LABELS for x in r.json()["results"])
    names = [p["name"] for p in gateway.get("/v1/pipelines").json()["pipelines"]]
    assert names == ["fan3", "best", "strict", "tight", "stc", "vote"]
