"""The ingress deployment: HTTP in front, DeploymentHandles to the model versions behind.

It holds no model logic: requests go through `serve_app.dataplane.DataPlane`; each model version is a Serve
application of its own, reached through a `HandleBackend`, and `ServeModelManager` deploys or deletes such
applications when an admin loads or unloads a version at run time.
"""

from __future__ import annotations

import asyncio
import logging

from ray import serve

from deployments.handles import backend_for
from deployments.manager import ServeModelManager
from deployments.metrics import metrics_for
from deployments.state_kv import SWEEP_INTERVAL_S, SYNC_INTERVAL_S, shared_routes
from serve_app.config import GatewayConfig
from serve_app.config.settings import GatewaySettings
from serve_app.dataplane import DataPlane
from serve_app.dataplane.routing import ModelRoutes
from serve_app.gc_settle import POLL_INTERVAL_S, GcSettle
from serve_app.protocols.auth import admin_token_for
from serve_app.protocols.http_app import create_app
from serve_app.protocols.oip_grpc import OipGrpcServicer
from serve_app.tracing import configure as configure_tracing

log = logging.getLogger("ray.serve")


async def every(interval_s: float, job) -> None:
    """Run `job` every `interval_s` for the replica's life; a failure is logged and the next run goes on."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await job()
        except Exception:  # noqa: BLE001 - a GCS hiccup must not end the loop
            log.exception("%s failed", getattr(job, "__qualname__", job))


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
@serve.ingress()  # late-bound: the app is built per replica, around that replica's dataplane
class Gateway(OipGrpcServicer):
    """HTTP through the ASGI app; gRPC (OIP) through the RPC-named methods of OipGrpcServicer."""

    def __init__(self, config: dict, table: dict[str, list[dict]], gpus_in_cluster: float = 0.0,
                 state_key: str = "", protected: list[str] = ()):
        self.config = GatewayConfig.model_validate(config)
        configure_tracing(self.config.server.tracing)
        routes = {}
        for model, versions in table.items():
            routes[model] = ModelRoutes(model)
            for v in versions:
                backend = backend_for(self.config.model(v["deployment"]), v["app"], v["label"])
                routes[model].add(v["label"], backend, v["weight"], facts=v)
        manager = ServeModelManager(self.config, gpus_in_cluster)
        # `state_key` names this deployment's shared routing state (every replica, and a replica Ray starts again,
        # gets the same); none: this replica's memory (one replica, as before the state was shared).
        shared = shared_routes(state_key) if state_key else None
        self.dataplane = DataPlane(self.config, routes, manager, metrics_for(self.config.server.metrics), shared,
                                   protected)
        self.dataplane.table.replica = serve.get_replica_context().replica_id.unique_id
        if shared is not None:  # the constructor runs on the replica's event loop
            loop, admin = asyncio.get_running_loop(), self.dataplane.admin
            self._tasks = [loop.create_task(every(SYNC_INTERVAL_S, admin.sync)),
                           loop.create_task(every(SWEEP_INTERVAL_S, admin.sweep))]
        settle = GcSettle()  # once warm, the collector stops rescanning what the ingress keeps for life

        async def settle_gc():
            settle.poll()
        self._gc_task = asyncio.get_running_loop().create_task(every(POLL_INTERVAL_S, settle_gc))
        settings = GatewaySettings()
        self.admin_token = admin_token_for(
            settings.admin_token.get_secret_value() if settings.admin_token else None, self.config.server.host)
        self.inference_token = settings.inference_token.get_secret_value() if settings.inference_token else None

    def __serve_build_asgi_app__(self):
        return create_app(lambda: self.dataplane, self.admin_token, self.inference_token)
