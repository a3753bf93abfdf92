"""The ingress deployment: HTTP in front, DeploymentHandles to the model versions behind.

It holds no model logic: requests go through `serve_app.dataplane.DataPlane`; each model version is a Serve
application of its own, reached through a `HandleBackend`, and `ServeModelManager` deploys or deletes such
applications when an admin loads or unloads a version at run time.
"""

from __future__ import annotations

from ray import serve

from deployments.handles import backend_for
from deployments.manager import ServeModelManager
from deployments.metrics import metrics_for
from serve_app.config import GatewayConfig
from serve_app.config.settings import GatewaySettings
from serve_app.dataplane import DataPlane
from serve_app.dataplane.routing import ModelRoutes
from serve_app.protocols.auth import admin_token_for
from serve_app.protocols.http_app import create_app
from serve_app.protocols.oip_grpc import OipGrpcServicer


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
                routes[model].add(v["label"], backend, v["weight"], facts=v)
        manager = ServeModelManager(self.config, gpus_in_cluster)
        self.dataplane = DataPlane(self.config, routes, manager, metrics_for(self.config.server.metrics))
        settings = GatewaySettings()
        self.admin_token = admin_token_for(
            settings.admin_token.get_secret_value() if settings.admin_token else None, self.config.server.host)
        self.inference_token = settings.inference_token.get_secret_value() if settings.inference_token else None

    def __serve_build_asgi_app__(self):
        return create_app(lambda: self.dataplane, self.admin_token, self.inference_token)
