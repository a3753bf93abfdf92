"""Shared shell of the model deployments: load once, name the version, batch, keep the event loop free."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import torch

from serve_app.processing import flatten, unflatten
from serve_app.versioning import content_hash, short

log = logging.getLogger("ray.serve")


class ModelDeployment:
    """Subclasses implement `_load(path) -> info dict` and an `@serve.batch` method named `_batched`.

    `spec` is a `ModelConfig` dumped to JSON plus the resolved `path`; it crosses process boundaries.
    """

    def __init__(self, spec: dict):
        self.spec = spec
        self.name = spec["name"]
        path = Path(spec["path"])
        threads = spec["resources"].get("threads")
        if threads:
            torch.set_num_threads(int(threads))
        self.content_hash = content_hash(path)
        self.version = spec.get("version") or f"sha256:{short(self.content_hash)}"
        self._details = self._load(path)
        batching = spec["batching"]
        # One config drives @serve.batch: the decorator's arguments are only defaults.
        self._batched.set_max_batch_size(batching["max_batch_size"])
        self._batched.set_batch_wait_timeout_s(batching["batch_wait_timeout_s"])
        self.micro_batch = batching["max_batch_size"]
        log.info("model %s loaded: version %s (%s)", self.name, self.version, self.content_hash)

    def _load(self, path: Path) -> dict:
        raise NotImplementedError

    async def info(self) -> dict:
        return {"version": self.version, "content_hash": self.content_hash,
                "device": str(self.runtime.placement.device), **self._details}

    async def _run_flat(self, requests: list[list[str]], fn: Callable[[list[str]], list]) -> list[list]:
        """Run one model call over every batched request's texts, off the event loop, and split the results."""
        flat, sizes = flatten(requests)
        return unflatten(await asyncio.to_thread(fn, flat), sizes)
