"""Ray Serve deployment of the text classifier: batching and threading around the runtime its task contract
loads (torch, or onnxruntime for an ONNX variant)."""

from __future__ import annotations

from pathlib import Path

from ray import serve

from deployments.base import ModelDeployment
from serve_app.tasks import contract


@serve.deployment
class ClassifierDeployment(ModelDeployment):
    def _load(self, path: Path) -> dict:
        self.runtime = contract(self.spec["task"]).load_runtime(path, self.spec)
        return {"labels": self.runtime.labels, "max_length": self.runtime.max_length,
                "runtime": self.runtime.variant.runtime, "transforms": self.runtime.variant.transforms}

    async def infer(self, texts: list[str], params: dict) -> dict:
        results = await self._queue(texts)
        return {"version": self.version, "max_length": self.runtime.max_length, "results": results}

    def _predict(self, texts: list[str]) -> list[dict]:
        return self.runtime.predict(texts, self.micro_batch)
