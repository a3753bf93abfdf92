"""The ingress deployment: HTTP in front, DeploymentHandles to the model versions behind.

It holds no model logic: requests go through `serve_app.dataplane.DataPlane`; each model version is a Serve
application of its own, reached through a `HandleBackend`, and `ServeModelManager` deploys or deletes such
applications when an admin loads or unloads a version at run time.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import contextmanager

from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from deployments.metrics import metrics_for
from serve_app.app import app_name, open_registry, plan_version, version_app
from serve_app.dataplane.batching import SlotBatcher
from serve_app.config import GatewayConfig, ModelConfig
from serve_app.dataplane import DataPlane
from serve_app.errors import LoadFailed, ModelNotReady, Overloaded
from serve_app.protocols.http_app import create_app
from serve_app.protocols.oip_grpc import OipGrpcServicer
from serve_app.dataplane.routing import ModelRoutes
from serve_app.config.settings import GatewaySettings

log = logging.getLogger("ray.serve")


# A replica that died or cannot be reached: the call may succeed on another (or the replacement) replica.
_REPLICA_LOST = (RayActorError, ActorUnavailableError, ReplicaUnavailableError, DeploymentUnavailableError)


class HandleBackend:
    """`ModelBackend` over a Ray Serve DeploymentHandle; Ray's faults become typed, retryable gateway errors.

    With `model.coalesces`, concurrent requests without parameters are merged into one handle call (a
    `SlotBatcher` keeping `model.calls_in_flight` calls in flight): a hop through Ray costs about as much CPU as
    a small model's forward pass, so one hop per batch instead of per request is most of the fast path.
    """

    def __init__(self, handle: DeploymentHandle, name: str = "", model: ModelConfig | None = None):
        self.handle = handle
        self.name = name or handle.deployment_name
        self.coalescer = None
        if model is not None and model.coalesces:
            self.coalescer = SlotBatcher(self._merged, model.batching.max_batch_size, model.calls_in_flight,
                                         max_queued=model.resources.max_queued_requests, name=self.name)

    async def infer(self, texts: list[str], params: dict) -> dict:
        if self.coalescer is None or params:
            return await self._call(self.handle.infer.remote(texts, params))
        answers = await self.coalescer.submit(texts)
        return {**answers[0][0], "results": [result for _, result in answers]}

    async def _merged(self, texts: list[str]) -> list[tuple[dict, dict]]:
        """One model call for many requests' texts: (the answer's version fields, one result) per text."""
        out = await self._call(self.handle.infer.remote(texts, {}))
        fields = {k: v for k, v in out.items() if k != "results"}
        return [(fields, result) for result in out["results"]]

    async def info(self) -> dict:
        return await self._call(self.handle.info.remote())

    async def stream(self, request: dict):
        """The replica's `generate` events through a streaming handle (a DeploymentResponseGenerator)."""
        response = self.handle.options(stream=True).generate.remote(request)
        finished = False
        try:
            with self._ray_faults("a stream"):
                async for event in response:
                    yield event
            finished = True
        finally:
            if not finished:  # the client left or a deadline passed: stop the replica's generator (and sequence)
                response.cancel()

    @contextmanager
    def _ray_faults(self, what: str):
        """Ray's faults as typed, retryable gateway errors."""
        try:
            yield
        except BackPressureError as err:
            # The ingress already holds max_queued_requests calls waiting for this model: refuse at once.
            raise Overloaded(f"model '{self.name}' is at capacity; retry shortly",
                             retry_after_s=getattr(err, "retry_after_s", None) or 1) from None
        except _REPLICA_LOST:
            log.warning("a replica of %s was lost during %s", self.name, what)
            raise ModelNotReady(f"model '{self.name}' lost a replica while answering; retry shortly",
                                retry_after_s=1) from None

    async def _call(self, response):
        with self._ray_faults("a call"):
            try:
                return await response
            except asyncio.CancelledError:
                # A deadline passed or the client left. Ray Serve does not cancel a handle call whose awaiter is
                # cancelled; without this the model would go on computing an answer nobody reads.
                response.cancel()
                raise


def backend_for(model: ModelConfig, app: str) -> HandleBackend:
    return HandleBackend(serve.get_deployment_handle(model.name, app_name=app), model.name, model)


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
        return plan.label, backend_for(model, plan.app_name)

    async def unload(self, model: ModelConfig, label: str) -> None:
        await asyncio.to_thread(serve.delete, app_name(model.name, label))


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
@serve.ingress()  # late-bound: the app is built per replica, around that replica's dataplane
class Gateway(OipGrpcServicer):
    """HTTP through the ASGI app; gRPC (OIP) through the RPC-named methods of OipGrpcServicer."""

    def __init__(self, config: dict, table: dict[str, list[dict]], gpus_in_cluster: float = 0.0):
        self.config = GatewayConfig.model_validate(config)
        routes = {}
        for model, versions in table.items():
            routes[model] = ModelRoutes(model)
            for v in versions:
                backend = backend_for(self.config.model(v["deployment"]), v["app"])
                routes[model].add(v["label"], backend, v["weight"])
        manager = ServeModelManager(self.config, gpus_in_cluster)
        self.dataplane = DataPlane(self.config, routes, manager, metrics_for(self.config.server.metrics))
        settings = GatewaySettings()
        self.admin_token = settings.admin_token.get_secret_value() if settings.admin_token else None
        self.inference_token = settings.inference_token.get_secret_value() if settings.inference_token else None

    def __serve_build_asgi_app__(self):
        return create_app(lambda: self.dataplane, self.admin_token, self.inference_token)
