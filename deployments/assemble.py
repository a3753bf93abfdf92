"""Start Ray Serve and deploy a plan (`serve_app.plan`): every model version, then the ingress."""

from __future__ import annotations

from ray import serve
from ray.serve.config import gRPCOptions

from deployments.apps import version_app
from deployments.ingress import Gateway
from serve_app.config import GatewayConfig
from serve_app.plan import GATEWAY_APP, VersionPlan, ingress_options, plan_versions, route_table
from serve_app.protocols.grpc_stubs import GRPC_SERVICER
from serve_app.registry import Registry


def gateway_app(config: GatewayConfig, plans: list[VersionPlan], gpus_in_cluster: float,
                env: dict[str, str] | None = None):
    """The ingress application; `env` adds environment variables to its replica (e.g. GATEWAY_* settings)."""
    return Gateway.options(**ingress_options(config, env)).bind(config.model_dump(mode="json"),
                                                                 route_table(config, plans), gpus_in_cluster)


def start_serve(config: GatewayConfig, host: str | None = None, http_port: int | None = None,
                grpc_port: int | None = None) -> None:
    """Start Ray Serve's HTTP proxy and, unless the port is 0, its gRPC proxy with the OIP service."""
    grpc = config.server.grpc_port if grpc_port is None else grpc_port
    serve.start(
        http_options={"host": host or config.server.host, "port": http_port or config.server.http_port},
        grpc_options=gRPCOptions(port=grpc, grpc_servicer_functions=[GRPC_SERVICER]) if grpc else None,
    )


def deploy(config: GatewayConfig, gpus_in_cluster: float = 0.0, registry: Registry | None = None) -> list[str]:
    """Deploy every planned version and the gateway concurrently; return the application names."""
    plans = plan_versions(config, registry)
    targets = [serve.RunTarget(version_app(config.model(p.model), p.spec, gpus_in_cluster), name=p.app_name,
                               route_prefix=None) for p in plans]
    targets.append(serve.RunTarget(gateway_app(config, plans, gpus_in_cluster), name=GATEWAY_APP, route_prefix="/"))
    serve.run_many(targets)
    return [t.name for t in targets]
