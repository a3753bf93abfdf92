"""A model that returns its input, after `delay_ms`: measures what a hop of the gateway costs."""

from __future__ import annotations

import asyncio

from ray import serve


@serve.deployment
class IdentityDeployment:
    def __init__(self, spec: dict):
        self.delay_s = spec.get("delay_ms", 0.0) / 1000

    async def infer(self, texts: list[str], params: dict) -> dict:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return {"version": "builtin", "results": [{"text": t} for t in texts]}

    async def info(self) -> dict:
        return {"version": "builtin", "delay_ms": self.delay_s * 1000}
