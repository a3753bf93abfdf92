"""The optimization loop on the real BBC classifier: an int8 ONNX variant passes the gate and is registered,
and, served by the gateway, it labels the held-out articles as the torch parent does."""

from __future__ import annotations

import httpx
import pytest
from support.serve import REPO, deployed

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.optimize.evaluate import bbc_held_out
from serve_app.optimize.pipeline import optimize
from serve_app.optimize.plan import make_plan
from serve_app.registry import Registry

CLASSIFIER = REPO / "models" / "classifier"


@pytest.fixture(scope="module")
def held_out():
    return bbc_held_out()


@pytest.fixture(scope="module")
def variant(tmp_path_factory, held_out):
    if not (CLASSIFIER / "training.json").is_file():
        pytest.skip("the real classifier is not prepared; run `make models` (make test does)")
    root = tmp_path_factory.mktemp("optimize-real")
    registry = Registry(str(root / "store"), cache_dir=root / "cache")
    registry.register("classifier", CLASSIFIER)
    result = optimize(registry, "classifier@1", make_plan("classification", runtime="onnx", quantize="int8"),
                      held_out, rounds=2, alias="fast")
    return root, registry, result


def test_int8_onnx_variant_passes_the_gate_and_is_registered_with_lineage(variant, held_out):
    _, registry, result = variant
    print("parent", result.metrics["parent"], "\nvariant", result.metrics["variant"])
    assert len(held_out) == 496
    assert result.accepted and result.drop <= 1.0, result.metrics
    assert result.metrics["variant"]["accuracy"] >= 95.0
    assert result.metrics["variant"]["size_mb"] < 0.35 * result.metrics["parent"]["size_mb"]  # int8 weights
    version = registry.resolve("classifier@fast")
    assert (version.iteration, version.parent, version.transform) == (2, 1, "onnx+quantize-int8")


def test_onnx_variant_served_by_the_gateway_labels_like_torch(serve_session, variant, held_out):
    root, _, _ = variant
    common = {"task": "classification", "registry_model": "classifier", "max_length": 256,
              "batching": {"max_batch_size": 16}, "resources": {"num_cpus": 0.3, "num_gpus": 0, "threads": 1}}
    config = parse_config({
        "registry": {"uri": str(root / "store"), "cache_dir": str(root / "cache")},
        "models": [{"name": "bbc-torch", "version": "1", "runtime": "torch", **common},
                   {"name": "bbc-onnx", "version": "fast", "runtime": "onnx", **common}],
    }, settings=GatewaySettings(models_dir=root))
    texts = [a.text for a in held_out]
    labels: dict[str, list[str]] = {"bbc-torch": [], "bbc-onnx": []}
    with deployed(config), httpx.Client(base_url=serve_session, timeout=300) as client:
        for model in labels:
            for i in range(0, len(texts), 32):
                r = client.post("/v1/classify", json={"texts": texts[i:i + 32], "model": model})
                assert r.status_code == 200, r.text
                labels[model] += [x["label"] for x in r.json()["results"]]
        assert client.post("/v1/classify", json={"texts": ["x"], "model": "bbc-onnx"}).headers[
            "x-model-version"] == "2"
    same = sum(a == b for a, b in zip(labels["bbc-torch"], labels["bbc-onnx"]))
    print(f"served ONNX int8 agrees with torch on {same}/{len(texts)} held-out articles")
    assert same >= 0.99 * len(texts)
