"""Per-version load and unload at run time: each registry version is a Serve application of its own."""

from __future__ import annotations

import asyncio
import logging

from ray import serve
from ray.serve.schema import ApplicationStatus

from deployments.apps import version_app
from deployments.handles import HandleBackend, backend_for
from serve_app.config import GatewayConfig, ModelConfig
from serve_app.errors import LoadFailed
from serve_app.plan import GATEWAY_APP, app_name, open_registry, plan_version

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
        # A multiplexed model's application is already running (its replicas load the version at its first
        # call), unless every version was unloaded and the sweep deleted it.
        if model.multiplex is None or not await self._running(plan.app_name):
            await self._deploy(model, plan, version.iteration)
        backend = backend_for(model, plan.app_name, plan.label)
        backend.facts = plan.facts  # content hash and gated accuracy, for the route the admin adds
        return plan.label, backend

    async def _running(self, app: str) -> bool:
        status = (await asyncio.to_thread(serve.status)).applications.get(app)
        return status is not None and status.status in (ApplicationStatus.RUNNING, ApplicationStatus.DEPLOYING)

    async def _deploy(self, model: ModelConfig, plan, iteration: int) -> None:
        try:
            # serve.run blocks until the version is running (or failed): keep it off the event loop.
            await asyncio.to_thread(serve.run, version_app(model, plan.spec, self.gpus), name=plan.app_name,
                                    route_prefix=None)
        except Exception:
            log.exception("deploying %s failed", plan.app_name)
            await asyncio.to_thread(serve.delete, plan.app_name)
            raise LoadFailed(f"{model.name}@{iteration} failed to start; see the server log") from None

    async def unload(self, model: ModelConfig, label: str) -> None:
        # A multiplexed version shares its application: once no route names it, its replicas evict it as others
        # are called (LRU), and the sweep deletes the application when no version is left.
        if model.multiplex is None:
            await asyncio.to_thread(serve.delete, app_name(model.name, label))

    def attach(self, model: ModelConfig, label: str, app: str) -> HandleBackend:
        return backend_for(model, app, label)

    async def orphans(self, config: GatewayConfig, routed: set[str]) -> list[str]:
        """Applications whose deployment is one of the configured models, past deploying, that no route names."""
        models = {m.name for m in config.models}
        status = await asyncio.to_thread(serve.status)
        return sorted(name for name, app in status.applications.items()
                      if name not in routed and name != GATEWAY_APP and models & set(app.deployments)
                      and app.status not in (ApplicationStatus.NOT_STARTED, ApplicationStatus.DEPLOYING,
                                             ApplicationStatus.DELETING))

    async def delete(self, app: str) -> None:
        log.warning("deleting application %s: no version of the routing state routes to it", app)
        await asyncio.to_thread(serve.delete, app)
