"""Plan the Ray Serve applications a gateway config needs, as plain data (no Ray here: `deployments.assemble`
turns a plan into applications).

Each served model version is its own Serve application (`<model>--v<iteration>`, no HTTP route), so versions
can be deployed and deleted at run time without touching the others; the `gateway` application is the HTTP
ingress and reaches them through DeploymentHandles.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from serve_app.config import GatewayConfig, ModelConfig, Resources
from serve_app.registry import ModelVersion, Registry
from serve_app.registry.versioning import content_hash, short
from serve_app.tasks import contract

GATEWAY_APP = "gateway"


@dataclass(frozen=True)
class VersionPlan:
    model: str
    label: str  # "3" for registry iteration 3; "sha256:<12 hex>" for a folder source
    app_name: str
    weight: float
    spec: dict  # what the model deployment receives
    # What the ingress knows of the version: content_hash (response cache keys), accuracy and gated (selection).
    facts: dict = field(default_factory=dict)


def version_facts(version: ModelVersion | None, folder_hash: str = "") -> dict:
    """A version's content hash and, for selection, its gated held-out accuracy. A version `gateway optimize`
    registered passed its gate (it registers nothing else); a fine-tuned root carries its own held-out accuracy;
    one registered by hand with a `gate: failed` tag, or without an accuracy, is never selected."""
    if version is None:
        return {"content_hash": folder_hash, "accuracy": None, "gated": False}
    metrics, tags = getattr(version, "metrics", {}), getattr(version, "tags", {})  # (stand-ins in tests have neither)
    accuracy = gated_accuracy(metrics)
    return {"content_hash": version.content_hash, "accuracy": accuracy,
            "gated": accuracy is not None and tags.get("gate") != "failed"}


def gated_accuracy(metrics: dict) -> float | None:
    """A version's held-out accuracy in points. Registries prepared before it was recorded in points hold the
    fine-tuned root's as a fraction (0.9839): read as 98.39, since no classifier is gated at 1%."""
    accuracy = metrics.get("accuracy")
    if accuracy is None:
        return None
    return round(accuracy * 100, 2) if accuracy <= 1.0 else accuracy


def resolve_num_gpus(requested: float | str, gpus_in_cluster: float) -> float:
    """'auto' takes one GPU per replica when the cluster has any; an explicit number is kept as given."""
    if requested == "auto":
        return 1.0 if gpus_in_cluster >= 1 else 0.0
    return float(requested)


def open_registry(config: GatewayConfig) -> Registry:
    return Registry(config.registry_uri(), config.registry.options(), config.cache_dir())


def registry_spec(config: GatewayConfig) -> dict:
    return {"uri": config.registry_uri(), "options": config.registry.options(), "cache_dir": str(config.cache_dir())}


def model_spec(config: GatewayConfig, model: ModelConfig, version: ModelVersion | None = None) -> dict:
    """What a model deployment needs, as plain JSON: its config plus a folder or a registry version."""
    spec = {**model.model_dump(mode="json"), "metrics": config.server.metrics}
    if version is None:
        return {**spec, "path": str(config.source_of(model))}
    return {**spec, "registry": registry_spec(config), "iteration": version.iteration,
            "content_hash": version.content_hash}


def app_name(model: str, label: str) -> str:
    return f"{model}--v{label}" if label.isdigit() else f"{model}--folder"


def mux_app(model: str) -> str:
    """The one application serving every version of a multiplexed model (a version's label is its model id)."""
    return f"{model}--mux"


def plan_version(config: GatewayConfig, model: ModelConfig, version: ModelVersion, weight: float) -> VersionPlan:
    label = str(version.iteration)
    if model.multiplex is not None:  # the application's replicas load the version by its label when called
        spec = {**model.model_dump(mode="json"), "metrics": config.server.metrics, "registry": registry_spec(config)}
        return VersionPlan(model.name, label, mux_app(model.name), weight, spec, version_facts(version))
    return VersionPlan(model.name, label, app_name(model.name, label), weight, model_spec(config, model, version),
                       version_facts(version))


def plan_versions(config: GatewayConfig, registry: Registry | None = None) -> list[VersionPlan]:
    """Every version to deploy at start, with its traffic weight (selectors naming one version add up)."""
    plans: list[VersionPlan] = []
    for model in config.models:
        if not contract(model.task).has_files:
            plans.append(VersionPlan(model.name, "builtin", f"{model.name}--builtin", 1.0,
                                     model.model_dump(mode="json")))
            continue
        if model.source is not None:
            digest = content_hash(config.source_of(model))
            label = f"sha256:{short(digest)}"
            plans.append(VersionPlan(model.name, label, app_name(model.name, label), 1.0,
                                     model_spec(config, model), version_facts(None, digest)))
            continue
        registry = registry or open_registry(config)
        weights: dict[int, tuple[ModelVersion, float]] = {}
        for selector, weight in model.selectors.items():
            version = registry.resolve(f"{model.registry_name}@{selector}")
            previous = weights.get(version.iteration, (version, 0.0))[1]
            weights[version.iteration] = (version, previous + weight)
        plans += [plan_version(config, model, v, w) for v, w in weights.values()]
    return plans


def replica_options(res: Resources) -> dict:
    """A fixed replica count, or Ray Serve's `autoscaling_config` when the model declares autoscaling; and how
    many may share a node, when limited."""
    spread = {} if res.max_replicas_per_node is None else {"max_replicas_per_node": res.max_replicas_per_node}
    if res.autoscaling is None:
        return {"num_replicas": res.replicas, **spread}
    return {"autoscaling_config": res.autoscaling.model_dump(exclude_none=True), **spread}


def deployment_options(model: ModelConfig, gpus_in_cluster: float) -> dict:
    res = model.resources
    actor = {"num_cpus": res.num_cpus, "num_gpus": resolve_num_gpus(res.num_gpus, gpus_in_cluster)}
    if res.custom:
        actor["resources"] = dict(res.custom)
    return {
        "name": model.name,
        **replica_options(res),
        "max_ongoing_requests": model.max_ongoing_requests,
        "max_queued_requests": res.max_queued_requests or -1,  # -1: Ray Serve's "no limit"
        "ray_actor_options": actor,
        # Model hops are internal: a per-call access line in every replica would double the ingress's log.
        "logging_config": {"enable_access_log": False},
    }


# Environment of the ingress replica. Its handles re-try a request waiting for a full model replica with
# exponential backoff capped at Ray's default 0.5 s; a queued request then waits up to 0.5 s past the moment a
# slot frees. Capped at 50 ms, a request admitted under load (max_queued_requests) takes a freed slot within
# 50 ms; the cost is a queue-length probe per waiting request every 50 ms.
INGRESS_ENV = {"RAY_SERVE_ROUTER_RETRY_MAX_BACKOFF_S": "0.05"}


def ingress_options(config: GatewayConfig, env: dict[str, str] | None = None) -> dict:
    """Ray Serve options of the ingress deployment; `env` adds environment variables to its replica."""
    server = config.server
    return {"name": GATEWAY_APP, "num_replicas": server.ingress_replicas, "max_ongoing_requests": 1000,
            "logging_config": {"enable_access_log": server.access_log},
            "ray_actor_options": {"num_cpus": server.ingress_num_cpus,
                                  "runtime_env": {"env_vars": {**INGRESS_ENV, **(env or {})}}}}


def route_table(config: GatewayConfig, plans: list[VersionPlan]) -> dict[str, list[dict]]:
    """What the ingress routes to, per model: each version's label, application, deployment and weight."""
    table = {m.name: [] for m in config.models}
    for p in plans:
        table[p.model].append({"label": p.label, "app": p.app_name, "deployment": p.model, "weight": p.weight,
                               **p.facts})
    return table


# -- declarative deploys (a RayService's serveConfigV2) ---------------------------------------------------
# One application per configured (model, selector), named before any registry is reachable; its builder
# (deployments/k8s_builders.py) resolves the selector inside the cluster.
BUILD_VERSION = "deployments.k8s_builders:build_version"
BUILD_GATEWAY = "deployments.k8s_builders:build_gateway"


@dataclass(frozen=True)
class DeclaredVersion:
    model: str
    selector: str  # a registry selector, "builtin" (identity) or "folder" (a `source` model)
    app_name: str
    weight: float


def selector_slug(selector: str) -> str:
    """`7` -> `v7`, `stable` -> `stable`, `sha256:3fa1` -> `sha256-3fa1`: safe in Ray's process titles."""
    if selector.isdigit():
        return f"v{selector}"
    return re.sub(r"[^a-z0-9-]+", "-", selector.lower()).strip("-") or "x"


def declared_versions(config: GatewayConfig) -> list[DeclaredVersion]:
    """Every application a declarative deploy starts for the models, with its traffic weight."""
    out: list[DeclaredVersion] = []
    for model in config.models:
        if model.multiplex is not None:
            raise ValueError(f"model '{model.name}': 'multiplex' is deployed by `gateway run` only; a RayService "
                             "config cannot declare it yet (remove 'multiplex' for Kubernetes)")
        if not contract(model.task).has_files:
            out.append(DeclaredVersion(model.name, "builtin", f"{model.name}--builtin", 1.0))
        elif model.source is not None:
            out.append(DeclaredVersion(model.name, "folder", f"{model.name}--folder", 1.0))
        else:
            out += [DeclaredVersion(model.name, sel, f"{model.name}--{selector_slug(sel)}", w)
                    for sel, w in model.selectors.items()]
    return out
