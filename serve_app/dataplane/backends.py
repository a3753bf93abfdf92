"""What the dataplane needs from the world around it: a backend per served model version, and a manager that
starts and stops versions. Ray Serve handles in production (deployments/), in-process fakes in unit tests."""

from __future__ import annotations

from typing import Protocol

from serve_app.config import GatewayConfig, ModelConfig


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

    def attach(self, model: ModelConfig, label: str, app: str) -> ModelBackend:
        """A backend for version `label` of `model` that another replica loaded (Serve application `app`)."""

    async def orphans(self, config: GatewayConfig, routed: set[str]) -> list[str]:
        """Applications of the configured models that are deployed (not being deployed) but not in `routed`."""

    async def delete(self, app: str) -> None:
        """Delete a Serve application."""
