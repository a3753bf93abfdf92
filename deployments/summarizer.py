"""Ray Serve deployment of the summarizer: batching and threading around `TextSummarizer`."""

from __future__ import annotations

from pathlib import Path

from ray import serve

from deployments.base import ModelDeployment
from serve_app.runtime.summarizer import TextSummarizer


@serve.deployment
class SummarizerDeployment(ModelDeployment):
    def _load(self, path: Path) -> dict:
        gen = self.spec.get("generation") or {}
        self.runtime = TextSummarizer(path, self.spec.get("max_length"), do_sample=gen.get("do_sample", False))
        return {"max_length": self.runtime.max_length}

    async def infer(self, texts: list[str], params: dict) -> dict:
        n = int(params["max_new_tokens"])
        results = await self._submit(texts, n)
        return {"version": self.version, "max_length": self.runtime.max_length, "max_new_tokens": n,
                "results": results}

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.02)
    async def _batched(self, requests: list[list[str]], limits: list[int]) -> list[list[dict]]:
        per_text = [n for texts, n in zip(requests, limits) for _ in texts]
        return await self._run_flat(
            requests, lambda flat: self.runtime.summarize(flat, per_text, self.micro_batch))
