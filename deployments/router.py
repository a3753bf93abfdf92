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


# One Gateway replica per process: the replica's dataplane, read by the HTTP routes of this process.
_dataplane: DataPlane | None = None


def _current() -> DataPlane:
    if _dataplane is None:
        raise RuntimeError("gateway replica not initialised")
    return _dataplane


http_app = create_app(_current)


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
@serve.ingress(http_app)
class Gateway:
    def __init__(self, config: dict, handles: dict[str, DeploymentHandle]):
        global _dataplane
        self.config = GatewayConfig.model_validate(config)
        _dataplane = DataPlane(self.config, {name: HandleBackend(h) for name, h in handles.items()})
