"""Text classification: one label, its score and the probability table per text (topics of news articles)."""

from __future__ import annotations

from pathlib import Path

from serve_app.pipelines import fusion
from serve_app.protocols.schemas import TextsRequest
from serve_app.tasks.contract import Output, TaskContract, WindowJoin


class ClassifyRequest(TextsRequest):
    """`{"texts": [...], "model": "classifier"}`: one label and probability table per text."""


def mean_of_windows(records: list[dict]) -> dict:
    """A long document's topic: the mean of its windows' probability tables."""
    return fusion.fuse({str(i): r["probabilities"] for i, r in enumerate(records)}, "mean")


def load(path: Path, spec: dict):
    from serve_app.runtime.classifier import load_classifier  # torch / onnxruntime: inside the replica only

    return load_classifier(path, spec.get("max_length"), spec.get("runtime", "auto"))


CONTRACT = TaskContract(
    name="classification",
    outputs=(Output("label", "BYTES", field_type="label"), Output("score", "FP32", field_type="number"),
             Output("probabilities", "FP32", (-1, -1), field_type="probabilities"),
             Output("truncated", "BOOL"), Output("input_tokens", "INT64")),
    deployment="deployments.batched:BatchedDeployment",
    request=ClassifyRequest,
    route="/v1/classify",
    runtime="serve_app.tasks.classification:load",
    runtimes=("auto", "torch", "onnx"),
    coalesces=True,
    window_join=WindowJoin("probabilities", "probabilities", mean_of_windows),
    quality_metric="accuracy",
)
