"""The optimize -> evaluate -> gate -> register loop over a local registry, with a tiny classifier whose own
predictions are the labels (so the parent scores 100% and any change a transform makes shows as a drop)."""

from __future__ import annotations

import pytest
from support.tiny_models import build_tiny_classifier

from serve_app.cli import main
from serve_app.optimize.evaluate import Example
from serve_app.optimize.pipeline import optimize
from serve_app.optimize.plan import make_plan
from serve_app.registry import Registry
from serve_app.runtime.classifier import TextClassifier
from serve_app.runtime.variant import read_variant

WORDS = "market election striker phone film minister bank screen vote award oil cup".split()
TEXTS = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(3 + i % 9)) for i in range(48)]


@pytest.fixture()
def registry(tmp_path):
    reg = Registry(str(tmp_path / "store"), cache_dir=tmp_path / "cache")
    reg.register("tiny", build_tiny_classifier(tmp_path / "tiny", seed=5, initializer_range=0.5))
    return reg


@pytest.fixture()
def own_labels(registry):
    runtime = TextClassifier(registry.pull(registry.resolve("tiny@1")))
    return [Example(t, r["label"]) for t, r in zip(TEXTS, runtime.predict(TEXTS))]


def test_a_faithful_variant_is_registered_with_its_lineage_and_measurements(registry, own_labels):
    result = optimize(registry, "tiny@1", make_plan("classification", runtime="onnx"), own_labels, rounds=2,
                      alias="fast")
    assert result.accepted and result.drop == 0 and result.metrics["parent"]["accuracy"] == 100
    version = result.version
    assert (version.iteration, version.parent, version.transform) == (2, 1, "onnx")
    assert registry.resolve("tiny@fast").iteration == 2
    assert version.metrics["accuracy"] == 100 and version.metrics["quality_drop"] == 0
    assert {"size_mb", "p50_b1_ms", "p50_b16_ms", "throughput_b16"} <= set(version.metrics)
    assert read_variant(registry.pull(version)).runtime == "onnx"


def test_the_gate_refuses_an_over_aggressive_prune_and_registers_nothing(registry, own_labels):
    result = optimize(registry, "tiny@1", make_plan("classification", prune=["magnitude:0.95"]), own_labels,
                      rounds=1, max_drop=1.0)
    assert not result.accepted and result.drop > 1.0 and result.version is None
    assert [v.iteration for v in registry.versions("tiny")] == [1]
    # The same variant passes a gate that allows its drop: the gate, not the build, refused it.
    loose = optimize(registry, "tiny@1", make_plan("classification", prune=["magnitude:0.95"]), own_labels,
                     rounds=1, max_drop=100)
    assert loose.accepted and loose.version.transform == "prune-magnitude(0.95,global)"


def test_cli_reports_plan_errors_and_accepts_a_faithful_variant(registry, tmp_path, capsys):
    config = tmp_path / "gateway.yaml"
    config.write_text(f"registry: {{uri: '{tmp_path / 'store'}', cache_dir: '{tmp_path / 'cache'}'}}\n"
                      "models: [{name: x, task: identity}]\n")
    assert main(["optimize", "tiny@1", "--quantize", "int4", "--config", str(config)]) == 2
    assert "add --runtime onnx" in capsys.readouterr().out
    # BBC topics are not the tiny model's labels: parent and variant both score 0, so the gate passes.
    assert main(["optimize", "tiny@1", "--runtime", "onnx", "--eval-limit", "16", "--dry-run",
                 "--config", str(config)]) == 0
    assert "accepted" in capsys.readouterr().out
    assert [v.iteration for v in registry.versions("tiny")] == [1]
