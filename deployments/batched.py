"""Ray Serve deployment of any task whose runtime answers a batch of texts at once: the classifier (torch, or
onnxruntime for an ONNX variant), and any later task of that shape. The runtime comes from the task contract's
loader and gives `predict(texts, batch_size) -> one record per text`, `max_length` and `details()`."""

from __future__ import annotations

from pathlib import Path

from ray import serve

from deployments.base import ModelDeployment
from serve_app.tasks import contract


@serve.deployment
class BatchedDeployment(ModelDeployment):
    def _load(self, path: Path) -> dict:
        self.runtime = contract(self.spec["task"]).load_runtime(path, self.spec)
        return self.runtime.details()

    async def infer(self, texts: list[str], params: dict, priority: int | None = None) -> dict:
        results = await self._queue(texts, priority)
        return {"version": self.version, "max_length": self.runtime.max_length, "results": results}

    def _predict(self, texts: list[str]) -> list[dict]:
        return self.runtime.predict(texts, self.micro_batch)
