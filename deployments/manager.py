"""Per-version load and unload at run time: each registry version is a Serve application of its own."""

from __future__ import annotations

import asyncio
import logging

from ray import serve

from deployments.apps import version_app
from deployments.handles import HandleBackend, backend_for
from serve_app.config import GatewayConfig, ModelConfig
from serve_app.errors import LoadFailed
from serve_app.plan import app_name, open_registry, plan_version

log = logging.getLogger("ray.serve")


class ServeModelManager:
    """Loads a registry version as its own Serve application; unloading deletes that application."""

    def __init__(self, config: GatewayConfig, gpus_in_cluster: float):
        self.config = config
        self.gpus = gpus_in_cluster

    async def load(self, model: ModelConfig, selector: str) -> tuple[str, HandleBackend]:
        registry = open_registry(self.config)
        version = await asyncio.to_thread(registry.resolve, f"{model.registry_name}@{selector}")
        # Verify before deploying: a corrupted version is refused here, and nothing serving is touched.
        await asyncio.to_thread(registry.pull, version)
        plan = plan_version(self.config, model, version, 0.0)
        try:
            # serve.run blocks until the version is running (or failed): keep it off the event loop.
            await asyncio.to_thread(serve.run, version_app(model, plan.spec, self.gpus), name=plan.app_name,
                                    route_prefix=None)
        except Exception:
            log.exception("deploying %s failed", plan.app_name)
            await asyncio.to_thread(serve.delete, plan.app_name)
            raise LoadFailed(f"{model.name}@{version.iteration} failed to start; see the server log") from None
        backend = backend_for(model, plan.app_name)
        backend.facts = plan.facts  # content hash and gated accuracy, for the route the admin adds
        return plan.label, backend

    async def unload(self, model: ModelConfig, label: str) -> None:
        await asyncio.to_thread(serve.delete, app_name(model.name, label))
