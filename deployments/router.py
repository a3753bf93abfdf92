"""The ingress deployment: HTTP in front, DeploymentHandles to the model deployments behind.

It holds no model logic: requests go through `serve_app.dataplane.DataPlane`, which reaches each model through
a `HandleBackend`. Pipelines (chains, fan-out, fusion) will run here too.
"""

from __future__ import annotations

from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_app.config import GatewayConfig
from serve_app.dataplane import DataPlane
from serve_app.http_api import create_app


class HandleBackend:
    """`ModelBackend` over a Ray Serve DeploymentHandle."""

    def __init__(self, handle: DeploymentHandle):
        self.handle = handle

    async def infer(self, texts: list[str], params: dict) -> dict:
        return await self.handle.infer.remote(texts, params)

    async def info(self) -> dict:
        return await self.handle.info.remote()


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
@serve.ingress()  # late-bound: the app is built per replica, around that replica's dataplane
class Gateway:
    def __init__(self, config: dict, handles: dict[str, DeploymentHandle]):
        self.config = GatewayConfig.model_validate(config)
        self.dataplane = DataPlane(self.config, {name: HandleBackend(h) for name, h in handles.items()})

    def __serve_build_asgi_app__(self):
        return create_app(lambda: self.dataplane)
