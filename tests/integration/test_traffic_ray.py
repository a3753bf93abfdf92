"""Switch nodes, shadow traffic and priorities (issue 33) on a real Ray Serve: a switch pipeline takes each branch
by header and by an earlier node's field; a shadowed model's callers get only the primary's answers while the
mirror's counts move; a priority mix under overload sheds only the low class."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from support.reliability import infer_body
from support.serve import deployed
from support.tiny_models import TINY_LABELS, build_tiny_classifier

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.registry import Registry

CPU = {"num_cpus": 0.1, "num_gpus": 0}
TEXT = "Shares rose after the bank's results."


def model(name: str) -> dict:
    return {"type": "model", "model": name}


@pytest.fixture(scope="module")
def gateway(serve_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("traffic")
    reg = Registry(str(root / "store"), cache_dir=root / "cache")
    for seed in (1, 2):
        reg.register("tiny-clf", build_tiny_classifier(root / f"src{seed}", seed=seed, initializer_range=0.5))
    config = parse_config({
        "registry": {"uri": str(root / "store"), "cache_dir": str(root / "cache")},
        "models": [
            {"name": "tiny-clf", "task": "classification", "version": "1", "max_length": 32, "resources": CPU},
            {"name": "echo", "task": "identity", "resources": CPU},
            # one call at a time, 0.3 s each: a few concurrent calls overload it
            {"name": "slow", "task": "identity", "delay_ms": 300,
             "resources": {**CPU, "max_ongoing_requests": 1, "max_queue_wait_s": 0.7}},
        ],
        "pipelines": [
            {"name": "by-header", "graph": {"type": "switch", "cases": {
                "clf": {"when": {"header": "x-route", "equals": "clf"}, "node": model("tiny-clf")}},
                "default": model("echo")}},
            {"name": "by-label", "graph": {"type": "chain", "steps": [
                {"node": model("tiny-clf")},
                {"node": {"type": "switch", "cases": {"known": {"when": {"field": "label", "one_of": TINY_LABELS},
                                                                 "node": model("echo")}}}}]}},
        ],
    }, settings=GatewaySettings(models_dir=root))
    with deployed(config), httpx.Client(base_url=serve_session, timeout=120) as client:
        yield client


def test_a_switch_takes_each_branch_by_header_and_by_an_earlier_nodes_field(gateway):
    r = gateway.post("/v1/pipelines/by-header", json={"texts": [TEXT]}, headers={"x-route": "clf"})
    assert r.status_code == 200, r.text
    [record] = r.json()["results"]
    assert record["branch"] == "clf" and record["label"] in TINY_LABELS
    [record] = gateway.post("/v1/pipelines/by-header", json={"texts": [TEXT]}).json()["results"]
    assert record["branch"] == "default" and "label" not in record
    [record] = gateway.post("/v1/pipelines/by-label", json={"texts": [TEXT]}).json()["results"]
    assert record["branch"] == "known"


def test_a_shadowed_model_answers_from_the_primary_while_the_mirror_counts_move(gateway):
    assert gateway.post("/v1/admin/models/tiny-clf/versions/2/load").status_code == 200  # weight 0
    r = gateway.put("/v1/admin/models/tiny-clf/shadow", json={"version": "2", "share": 1.0})
    assert r.status_code == 200, r.text
    try:
        for _ in range(20):
            r = gateway.post("/v1/classify", json={"texts": [TEXT], "model": "tiny-clf"})
            assert r.status_code == 200 and r.headers["x-model-version"] == "1"
        deadline = time.monotonic() + 30
        while True:  # mirrors finish after their callers were answered
            shadow = gateway.get("/v1/models/tiny-clf").json()["shadow"]
            compared = shadow["agreed"] + shadow["disagreed"]
            if compared + shadow["dropped"] >= 20 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert shadow["version"] == "2" and shadow["failed"] == 0 and compared >= 1, shadow
        assert compared + shadow["dropped"] == 20, shadow
    finally:
        gateway.put("/v1/admin/models/tiny-clf/shadow", json={})


def test_under_overload_only_the_low_class_is_shed(gateway, serve_session):
    slow = "/v2/models/slow/infer"  # identity models answer over OIP (and in pipelines)
    assert gateway.post(slow, json=infer_body("warm")).status_code == 200  # its service time is measured

    async def burst() -> list[tuple[str, int]]:
        async with httpx.AsyncClient(base_url=serve_session, timeout=120) as http:
            async def one(cls: str) -> tuple[str, int]:
                r = await http.post(slow, json=infer_body("x"), headers={"x-priority": cls})
                return cls, r.status_code
            low = [asyncio.ensure_future(one("low")) for _ in range(8)]
            await asyncio.sleep(0.05)
            high = [asyncio.ensure_future(one("high")) for _ in range(2)]
            return await asyncio.gather(*low, *high)

    outcomes = asyncio.run(burst())
    assert {s for c, s in outcomes if c == "high"} == {200}, outcomes
    low = [s for c, s in outcomes if c == "low"]
    assert 429 in low and set(low) <= {200, 429}, outcomes
