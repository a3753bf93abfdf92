"""What the dataplane needs from the world around it: a backend per served model version, and a manager that
starts and stops versions. Ray Serve handles in production (deployments/), in-process fakes in unit tests."""

from __future__ import annotations

from typing import Protocol

from serve_app.config import ModelConfig


class ModelBackend(Protocol):
    """What the dataplane needs from one served model version."""

    async def infer(self, texts: list[str], params: dict) -> dict:
        """Return {"results": [...one per text...], "version": ..., "max_length": ...}."""

    async def info(self) -> dict:
        """Return {"version": ..., "content_hash": ..., "max_length": ..., ...}."""


class ModelManager(Protocol):
    """Starts and stops model versions at run time (Ray Serve applications in production)."""

    async def load(self, model: ModelConfig, selector: str) -> tuple[str, ModelBackend]:
        """Deploy the registry version `selector` of `model`; return its label and backend."""

    async def unload(self, model: ModelConfig, label: str) -> None:
        """Stop the deployed version `label` of `model`."""
