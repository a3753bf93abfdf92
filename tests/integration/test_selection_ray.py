"""SLO-aware selection on a real Ray Serve: two gated variants of one model, a slow accurate one and a fast
less accurate one; with a latency budget the accurate one answers while it fits, and under load the choice
moves to the fast one (the gateway's live latency and queue measurements, not constants, decide)."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from support.serve import deployed
from support.tiny_models import build_tiny_classifier

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.registry import Registry

TEXT = "Markets rallied as the central bank held rates, while the football season opened with a surprise. " * 6
BUDGET = {"X-Latency-Budget-Ms": "400"}
NO_CACHE = {"Cache-Control": "no-cache"}  # every request reaches a model (the cache has a test of its own)


@pytest.fixture(scope="module")
def client(serve_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("selection")
    reg = Registry(str(root / "store"), cache_dir=root / "cache")
    # Iteration 1: MiniLM-sized (~100 ms a text here), the more accurate; 2: tiny and fast, gated a little lower.
    reg.register("sel", build_tiny_classifier(root / "slow", hidden_size=384, num_hidden_layers=6),
                 metrics={"accuracy": 95.0})
    reg.register("sel", build_tiny_classifier(root / "fast", seed=1), metrics={"accuracy": 94.0},
                 tags={"gate": "accuracy drop <= 1"})
    config = parse_config({
        "registry": {"uri": str(root / "store"), "cache_dir": str(root / "cache")},
        "models": [{"name": "clf", "task": "classification", "registry_model": "sel", "version": "1",
                    "max_length": 128, "cache": {"max_bytes": 1 << 20},
                    "selection": {"variants": ["2"]}, "resources": {"num_cpus": 0.1, "num_gpus": 0, "threads": 1},
                    "batching": {"max_batch_size": 8, "batch_wait_timeout_s": 0.0}}],
    }, settings=GatewaySettings(models_dir=root))
    with deployed(config), httpx.Client(base_url=serve_session, timeout=120) as c:
        yield c


def classify(client, headers=BUDGET):
    r = client.post("/v1/classify", json={"texts": [TEXT], "model": "clf"}, headers={**headers, **NO_CACHE})
    assert r.status_code == 200, r.text
    return r


def test_unloaded_the_accurate_variant_answers_and_under_load_the_choice_moves(client):
    assert classify(client, {}).headers["x-model-version"] == "1"  # no budget: the configured version
    quiet = [classify(client) for _ in range(6)]
    assert [r.headers["x-model-version"] for r in quiet[1:]] == ["1"] * 5, [r.json() for r in quiet]
    assert quiet[-1].json()["selection"]["reason"] == "fits"
    with ThreadPoolExecutor(24) as pool:
        loaded = list(pool.map(lambda _: classify(client), range(96)))
    chosen = Counter(r.headers["x-model-version"] for r in loaded)
    # The fast variant takes what the slow one cannot answer within the budget; the slow one keeps a share.
    assert chosen["2"] >= 24 and chosen["1"] >= 1, chosen
    status = client.get("/v1/models/clf").json()
    assert [(v["version"], v["accuracy"], v["gated"]) for v in status["selection"]["variants"]] == [
        ("1", 95.0, True), ("2", 94.0, True)]
    assert "2" in client.get("/v2/models/clf").json()["properties"]["selection_variants"]


def test_the_variant_bench_runs_p12_and_p13_end_to_end(client):
    """`make bench`'s variant targets in smoke mode (short windows): figures are not asserted on shared cores."""
    import asyncio
    from types import SimpleNamespace

    from serve_app.bench.variants.__main__ import rows, serve_targets
    from serve_app.bench.variants.p4 import Int8Result

    args = SimpleNamespace(concurrency=4, window=0.5, repeats=1)
    measured = asyncio.run(serve_targets(str(client.base_url).rstrip("/"), [TEXT, TEXT + " Again."],
                                         {"1": 95.0, "2": 94.0}, "2", args, lambda step: None))
    assert measured["p12"]["rounds"][0]["selection"]["requests"] > 0 and measured["p12"]["budget_ms"] > 0
    assert measured["p13"]["rounds"][0]["hit_p50_ms"] > 0
    p4 = Int8Result({"ORT int8 dynamic": {"speedup": 1.6, "drop": 0.2, "version": "2"}}, "ORT int8 dynamic")
    by_id = {r["id"]: r for r in rows(p4, measured, 94.0)}
    assert list(by_id) == ["P4", "P12", "P13", "P2"]
    assert by_id["P2"]["status"] == "not measured" and by_id["P2"]["problems"][0] == "P2 did not run"


def test_the_variant_bench_runs_p2_against_a_naive_server(client, tmp_path):
    """P2's measurement in smoke mode: the naive FastAPI server and the gateway, side by side, every answer
    checked (the bench runs it in a process and a Ray of its own per HTTP front; here the session's Ray)."""
    import asyncio

    from serve_app.bench.harness import naive_server
    from serve_app.bench.variants.p2 import measure

    folder = build_tiny_classifier(tmp_path / "naive")
    with naive_server(folder, 128) as naive_url:
        out = asyncio.run(measure(naive_url, str(client.base_url).rstrip("/"), [TEXT], 4, 0.5, 1,
                                  lambda step: None, model="clf"))
    [one] = out["rounds"]
    assert one["naive"]["requests"] > 0 and one["gateway"]["requests"] > 0
    assert one["naive"]["errors"] == 0 and one["gateway"]["errors"] == 0 and out["ratio"] > 0
