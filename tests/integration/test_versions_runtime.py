"""Registry versions on a real Ray Serve: config traffic split, run-time load/unload, integrity refusal."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
from support.serve import deployed
from support.tiny_models import build_tiny_classifier

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.registry import Registry

SPLIT = {"stable": 70, "canary": 30}
# 200 draws at p=0.3: sd = 3.2 points; 12 points is ~3.7 sd, so a correct router fails this < 1 in 4,000 runs.
TOLERANCE = 0.12


@pytest.fixture(scope="module")
def setup(serve_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("versions")
    reg = Registry(str(root / "store"), cache_dir=root / "cache")
    for seed in (1, 2, 3, 4):
        reg.register("tiny-clf", build_tiny_classifier(root / f"src{seed}", seed=seed))
    reg.set_alias("tiny-clf", "stable", "1")
    reg.set_alias("tiny-clf", "canary", "2")
    config = parse_config({
        "registry": {"uri": str(root / "store"), "cache_dir": str(root / "cache")},
        "models": [{"name": "tiny-clf", "task": "classification", "traffic": SPLIT, "max_length": 32,
                    "resources": {"num_cpus": 0.1, "num_gpus": 0}}],
    }, settings=GatewaySettings(models_dir=root))
    with deployed(config), httpx.Client(base_url=serve_session, timeout=120) as client:
        yield client, reg, root


def classify(client, model="tiny-clf"):
    r = client.post("/v1/classify", json={"texts": ["some text"], "model": model})
    assert r.status_code == 200 or r.status_code == 404, r.text
    return r


def test_config_traffic_split_is_observed_and_every_answer_names_its_version(setup):
    client, _, _ = setup
    versions = Counter()
    for _ in range(200):
        r = classify(client)
        assert r.headers["x-model-version"] == r.json()["version"]
        versions[r.json()["version"]] += 1
    assert set(versions) == {"1", "2"}
    assert abs(versions["2"] / 200 - 0.30) < TOLERANCE, versions


def test_load_weight_and_unload_a_version_at_run_time(setup):
    from ray import serve

    client, _, _ = setup
    started = time.monotonic()
    r = client.post("/v1/admin/models/tiny-clf/versions/3/load")
    load_s = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert {v["version"]: v["traffic_share"] for v in r.json()["versions"]} == {"1": 0.7, "2": 0.3, "3": 0.0}
    assert "tiny-clf--v3" in serve.status().applications
    assert classify(client, "tiny-clf@3").json()["version"] == "3"
    r = client.put("/v1/admin/models/tiny-clf/traffic", json={"3": 1})
    assert r.status_code == 200 and {classify(client).json()["version"] for _ in range(20)} == {"3"}
    started = time.monotonic()
    r = client.post("/v1/admin/models/tiny-clf/versions/2/unload")
    unload_s = time.monotonic() - started
    assert r.status_code == 200 and [v["version"] for v in r.json()["versions"]] == ["1", "3"]
    assert "tiny-clf--v2" not in serve.status().applications
    assert classify(client, "tiny-clf@2").status_code == 404
    print(f"\nhot load of a tiny version: {load_s:.2f} s, unload: {unload_s:.2f} s")


def test_a_corrupted_version_is_refused_and_serving_is_untouched(setup):
    from ray import serve

    client, _, root = setup
    stored = root / "store" / "tiny-clf" / "versions" / "4" / "files" / "config.json"
    stored.write_text(stored.read_text().replace("alpha", "omega"))
    r = client.post("/v1/admin/models/tiny-clf/versions/4/load")
    assert r.status_code == 409 and "refusing to load" in r.json()["error"]
    assert "tiny-clf--v4" not in serve.status().applications
    assert classify(client).status_code == 200
    r = client.post("/v1/admin/models/tiny-clf/versions/99/load")
    assert r.status_code == 404 and "no version" in r.json()["error"]
