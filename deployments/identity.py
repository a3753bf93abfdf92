"""A model that returns its input, after `delay_ms`: measures what a hop of the gateway costs, and gives the
reliability tests (backpressure, deadlines, cancellation, replica kills, soak) a model with known answers."""

from __future__ import annotations

import asyncio
import os

from ray import serve

from deployments.metrics import metrics_for


@serve.deployment
class IdentityDeployment:
    def __init__(self, spec: dict):
        self.delay_s = spec.get("delay_ms", 0.0) / 1000
        # Calls started, finished and cancelled (a client went away or a deadline passed): tests read these to
        # see that cancellation reaches the model.
        self.counts = {"started": 0, "finished": 0, "cancelled": 0}
        self.batch_sizes: list[int] = []  # texts per call, the last 1000 (what the batching tests read)
        self.metrics = metrics_for(spec.get("metrics", True))
        self.labels = {"model": spec["name"], "version": "builtin"}

    async def infer(self, texts: list[str], params: dict, priority: int | None = None) -> dict:
        # (`priority`: the request's class; this replica does not queue by class)
        self.counts["started"] += 1
        # One call is one model run here: with `batching.coalesce` the ingress merges requests into it.
        self.metrics.observe("gateway_batch_size", self.labels, len(texts))
        self.batch_sizes = [*self.batch_sizes[-999:], len(texts)]
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.counts["cancelled"] += 1
            raise
        self.counts["finished"] += 1
        return {"version": "builtin", "results": [{"text": t} for t in texts]}

    async def info(self) -> dict:
        return {"version": "builtin", "delay_ms": self.delay_s * 1000}

    async def stats(self) -> dict:
        return {**self.counts, "batch_sizes": self.batch_sizes, "pid": os.getpid()}

    def check_health(self) -> None:
        """Nothing can go wrong in a model without weights; kept so health checks run on every deployment."""
