"""Ray Serve deployment of the text classifier: batching and threading around `TextClassifier`."""

from __future__ import annotations

from pathlib import Path

from ray import serve

from deployments.base import ModelDeployment
from serve_app.runtime.classifier import TextClassifier


@serve.deployment
class ClassifierDeployment(ModelDeployment):
    def _load(self, path: Path) -> dict:
        self.runtime = TextClassifier(path, self.spec.get("max_length"))
        return {"labels": self.runtime.labels, "max_length": self.runtime.max_length}

    async def infer(self, texts: list[str], params: dict) -> dict:
        results = await self._submit(texts)
        return {"version": self.version, "max_length": self.runtime.max_length, "results": results}

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _batched(self, requests: list[list[str]]) -> list[list[dict]]:
        return await self._run_flat(requests, lambda flat: self.runtime.predict(flat, self.micro_batch))
