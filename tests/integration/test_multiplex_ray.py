"""Multiplexing (issue 33, item 1) on a real Ray Serve: every registry version of a model served by one
application's replicas (Ray Serve's `@serve.multiplexed`), loaded at its first call, the least recently used
evicted past the cap, each answering as itself over HTTP and gRPC; a version still loading past `load_wait_s`
is a 503 with Retry-After."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
from support.serve import call_deployment, deployed, scrape_sum
from support.tiny_models import build_tiny_classifier

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.registry import Registry

TEXT = "Shares rose after the bank's results."
MUX = {"tiny-clf": {"max_versions_per_replica": 2, "load_wait_s": 60},
       "tiny-lazy": {"max_versions_per_replica": 1, "load_wait_s": 0}}


@pytest.fixture(scope="module")
def gateway(serve_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("multiplex")
    reg = Registry(str(root / "store"), cache_dir=root / "cache")
    for seed in (1, 2, 3):
        reg.register("tiny-clf", build_tiny_classifier(root / f"src{seed}", seed=seed, initializer_range=0.5))
    config = parse_config({
        "registry": {"uri": str(root / "store"), "cache_dir": str(root / "cache")},
        "models": [{"name": name, "registry_model": "tiny-clf", "task": "classification", "version": "1",
                    "max_length": 32, "multiplex": mux, "resources": {"num_cpus": 0.1, "num_gpus": 0}}
                   for name, mux in MUX.items()],
    }, settings=GatewaySettings(models_dir=root))
    with deployed(config), httpx.Client(base_url=serve_session, timeout=120) as client:
        yield client


def classify(client: httpx.Client, ref: str) -> tuple[str, list[float]]:
    """The version that answered, and its probabilities in label order."""
    r = client.post("/v1/classify", json={"texts": [TEXT], "model": ref})
    assert r.status_code == 200, r.text
    probabilities = r.json()["results"][0]["probabilities"]  # label -> probability
    return r.headers["x-model-version"], [probabilities[label] for label in sorted(probabilities)]


def resident(model: str, label: str) -> list[str]:
    return call_deployment(f"{model}--mux", model, "info", model_id=label)["multiplex"]["resident"]


def test_versions_share_one_application_load_on_first_call_and_evict_least_recently_used(gateway):
    from ray import serve

    for label in ("2", "3"):
        r = gateway.post(f"/v1/admin/models/tiny-clf/versions/{label}/load")
        assert r.status_code == 200, r.text
    apps = set(serve.status().applications)
    assert "tiny-clf--mux" in apps and not {"tiny-clf--v1", "tiny-clf--v2", "tiny-clf--v3"} & apps
    # a status call reports every version without loading any
    versions = gateway.get("/v1/models/tiny-clf").json()["versions"]
    assert [v["version"] for v in versions] == ["1", "2", "3"]
    assert resident("tiny-clf", "1") == []
    answers = {}
    for label in ("1", "2", "3"):  # one replica, cap 2: loading 3 evicts 1
        version, probabilities = classify(gateway, f"tiny-clf@{label}")
        assert version == label
        answers[label] = probabilities
    assert resident("tiny-clf", "3") == ["2", "3"]
    # each version answers as itself: three seeds, three answers
    assert len({tuple(np.round(p, 6)) for p in answers.values()}) == 3
    version, again = classify(gateway, "tiny-clf@1")  # reloaded, evicting 2 (least recently used)
    assert version == "1" and np.allclose(again, answers["1"], atol=1e-6)
    assert resident("tiny-clf", "1") == ["1", "3"]
    version, again = classify(gateway, "tiny-clf@3")
    assert version == "3" and np.allclose(again, answers["3"], atol=1e-6)


def test_grpc_pins_a_multiplexed_version(gateway, grpc_target):
    import tritonclient.grpc as tg

    _, expected = classify(gateway, "tiny-clf@2")
    inp = tg.InferInput("text", [1], "BYTES")
    inp.set_data_from_numpy(np.array([TEXT.encode()], dtype=np.object_))
    result = tg.InferenceServerClient(grpc_target).infer(
        "tiny-clf", [inp], model_version="2", outputs=[tg.InferRequestedOutput("probabilities")])
    assert result.get_response().model_version == "2"
    np.testing.assert_allclose(result.as_numpy("probabilities")[0], expected, atol=1e-6)


def test_a_version_still_loading_is_a_503_with_retry_after_then_answers(gateway):
    r = gateway.post("/v1/classify", json={"texts": [TEXT], "model": "tiny-lazy@1"})
    assert r.status_code == 503, r.text
    assert r.json()["kind"] == "model_not_ready" and int(r.headers["retry-after"]) >= 1
    deadline = time.monotonic() + 60
    while (r := gateway.post("/v1/classify", json={"texts": [TEXT], "model": "tiny-lazy@1"})).status_code == 503:
        assert time.monotonic() < deadline, "the version never finished loading"
        time.sleep(0.2)
    assert r.status_code == 200 and r.headers["x-model-version"] == "1"


def test_loads_evictions_and_hits_are_exported(gateway):
    classify(gateway, "tiny-clf@3")
    held = len(resident("tiny-clf", "3"))
    deadline = time.monotonic() + 30  # Ray exports its metrics every few seconds
    while True:
        loads = scrape_sum("ray_gateway_multiplex_requests_total", model="tiny-clf", outcome="load")
        hits = scrape_sum("ray_gateway_multiplex_requests_total", model="tiny-clf", outcome="hit")
        evictions = scrape_sum("ray_gateway_multiplex_evictions_total", model="tiny-clf")
        if (loads >= 4 and loads - evictions == held and hits >= 2) or time.monotonic() > deadline:
            break
        time.sleep(1)
    # one replica: every load past what it holds now evicted one version
    assert loads >= 4 and loads - evictions == held == 2 and hits >= 2, (loads, evictions, hits, held)
