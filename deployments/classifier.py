"""Ray Serve deployment of the text classifier: batching and threading around a classifier runtime
(torch, or onnxruntime for an ONNX variant)."""

from __future__ import annotations

from pathlib import Path

from ray import serve

from deployments.base import ModelDeployment
from serve_app.runtime.classifier import load_classifier


@serve.deployment
class ClassifierDeployment(ModelDeployment):
    def _load(self, path: Path) -> dict:
        self.runtime = load_classifier(path, self.spec.get("max_length"), self.spec.get("runtime", "auto"))
        return {"labels": self.runtime.labels, "max_length": self.runtime.max_length,
                "runtime": self.runtime.variant.runtime, "transforms": self.runtime.variant.transforms}

    async def infer(self, texts: list[str], params: dict) -> dict:
        results = await self._submit(texts)
        return {"version": self.version, "max_length": self.runtime.max_length, "results": results}

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _batched(self, requests: list[list[str]]) -> list[list[dict]]:
        return await self._run_flat(requests, lambda flat: self.runtime.predict(flat, self.micro_batch))
