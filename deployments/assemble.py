"""Start Ray Serve and deploy a plan (`serve_app.plan`): every model version, then the ingress."""

from __future__ import annotations

import uuid

from ray import serve
from ray.serve.config import gRPCOptions

from deployments.apps import version_app
from deployments.ingress import Gateway
from serve_app.config import GatewayConfig
from serve_app.plan import GATEWAY_APP, VersionPlan, ingress_options, plan_versions, route_table
from serve_app.protocols.grpc_stubs import GRPC_SERVICER
from serve_app.registry import Registry


def gateway_app(config: GatewayConfig, plans: list[VersionPlan], gpus_in_cluster: float,
                env: dict[str, str] | None = None, state_key: str | None = None, protected: list[str] | None = None):
    """The ingress application; `env` adds environment variables to its replica (e.g. GATEWAY_* settings).
    `state_key` names the routing state its replicas share (default: new for this deploy, so a gateway started
    again starts from its config); `protected`: applications it started but does not route to (never swept)."""
    return Gateway.options(**ingress_options(config, env)).bind(
        config.model_dump(mode="json"), route_table(config, plans), gpus_in_cluster,
        state_key=state_key or uuid.uuid4().hex, protected=sorted({p.app_name for p in plans} | set(protected or ())))


def start_serve(config: GatewayConfig, host: str | None = None, http_port: int | None = None,
                grpc_port: int | None = None) -> None:
    """Start Ray Serve's HTTP proxy and, unless the port is 0, its gRPC proxy with the OIP service."""
    grpc = config.server.grpc_port if grpc_port is None else grpc_port
    serve.start(
        http_options={"host": host or config.server.host, "port": http_port or config.server.http_port},
        grpc_options=gRPCOptions(port=grpc, grpc_servicer_functions=[GRPC_SERVICER]) if grpc else None,
        proxy_location=proxy_location(config.server.proxy_location),
    )


def proxy_location(wanted: str) -> str:
    """`auto`: a proxy on every node, unless two live nodes share a host (they would contend for one port)."""
    if wanted != "auto":
        return wanted
    import ray

    hosts = [n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]]
    return "HeadOnly" if len(hosts) != len(set(hosts)) else "EveryNode"


def deploy(config: GatewayConfig, gpus_in_cluster: float = 0.0, registry: Registry | None = None,
           env: dict[str, str] | None = None) -> list[str]:
    """Deploy every planned version and the gateway concurrently; return the application names. `env`: more
    environment for the ingress replicas (GATEWAY_* settings)."""
    plans = plan_versions(config, registry)
    apps = {p.app_name: p for p in plans}  # a multiplexed model's versions share one application
    targets = [serve.RunTarget(version_app(config.model(p.model), p.spec, gpus_in_cluster), name=name,
                               route_prefix=None) for name, p in apps.items()]
    targets.append(serve.RunTarget(gateway_app(config, plans, gpus_in_cluster, env), name=GATEWAY_APP,
                                   route_prefix="/"))
    serve.run_many(targets)
    return [t.name for t in targets]


def undeploy(config: GatewayConfig) -> list[str]:
    """Delete the gateway's applications (the ingress and every version of its models, loaded at start or since)
    and leave Serve and its other applications running: stopping `gateway run --address` on a cluster."""
    models = {m.name for m in config.models}
    mine = [name for name, app in serve.status().applications.items()
            if name == GATEWAY_APP or models & set(app.deployments)]
    for name in mine:
        serve.delete(name)
    return mine
