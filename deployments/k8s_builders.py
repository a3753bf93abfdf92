"""Application builders for a declarative Serve config (a KubeRay RayService's `serveConfigV2`).

`gateway run` resolves registry versions first and then deploys one Serve application per version
(`deployments.assemble.deploy`). A RayService instead names its applications up front, in YAML, before any
registry is reachable: one application per configured (model, selector), whose builder resolves the selector
when Ray Serve builds it, inside the cluster, against the registry the pods see (`GATEWAY_REGISTRY_URI`, S3
credentials).

    import_path: deployments.k8s_builders:build_version   args: {config: {...one model...}, selector: stable, gpus: 1}
    import_path: deployments.k8s_builders:build_gateway   args: {config: {...the whole config...}, gpus: 1}

`serve_app.plan.declared_versions` is the naming rule both sides share; it needs neither Ray nor a registry.
"""

from __future__ import annotations

import hashlib
import json

from deployments.apps import version_app
from deployments.assemble import gateway_app
from serve_app.config import GatewayConfig, ModelConfig, parse_config
from serve_app.plan import VersionPlan, declared_versions, model_spec, open_registry, version_facts
from serve_app.registry.versioning import content_hash, short
from serve_app.tasks import contract


def _config(args: dict) -> GatewayConfig:
    # Environment overrides (GATEWAY_REGISTRY_URI, GATEWAY_MODELS_DIR...) of the pod building the app apply.
    return parse_config(args["config"], origin="serveConfigV2 args")


def _resolve(config: GatewayConfig, model: ModelConfig, selector: str, registry=None) -> tuple[str, dict, dict]:
    """The version label ("3", "sha256:...", "builtin"), the spec the model deployment receives and what the
    ingress knows of the version (`serve_app.plan.version_facts`)."""
    if not contract(model.task).has_files:
        return "builtin", model.model_dump(mode="json"), {}
    if model.source is not None:
        digest = content_hash(config.source_of(model))
        return f"sha256:{short(digest)}", model_spec(config, model), version_facts(None, digest)
    version = (registry or open_registry(config)).resolve(f"{model.registry_name}@{selector}")
    return str(version.iteration), model_spec(config, model, version), version_facts(version)


def build_version(args: dict):
    """One model version as a Serve application: args `config` (holding that one model), `selector`, `gpus`.
    (Ray calls an application builder with exactly one argument.)"""
    return version_application(args)


def build_gateway(args: dict):
    """The HTTP/gRPC ingress, routing to the applications `declared_versions` names: args `config`, `gpus`."""
    return gateway_application(args)


def version_application(args: dict, registry=None):
    config = _config(args)
    model = config.models[0]
    _, spec, _ = _resolve(config, model, args.get("selector", model.version), registry)
    return version_app(model, spec, float(args.get("gpus", 0)))


def gateway_application(args: dict, registry=None):
    config = _config(args)
    if registry is None and any(m.source is None and contract(m.task).has_files for m in config.models):
        registry = open_registry(config)
    plans: dict[tuple[str, str], VersionPlan] = {}
    for d in declared_versions(config):
        label, _, facts = _resolve(config, config.model(d.model), d.selector, registry)
        # Two selectors naming one version (stable and 3): one route with both weights; the second app idles.
        first = plans.get((d.model, label))
        weight = d.weight + (first.weight if first else 0.0)
        plans[(d.model, label)] = VersionPlan(d.model, label, first.app_name if first else d.app_name, weight, {},
                                              facts)
    # The same config keeps its routing state across head restarts (GCS on Redis) and rebuilds; a changed config
    # starts from what it declares. Apps it declares but does not route to (a second selector) are never swept.
    key = hashlib.sha256(json.dumps(args.get("config"), sort_keys=True, default=str).encode()).hexdigest()[:16]
    return gateway_app(config, list(plans.values()), float(args.get("gpus", 0)), state_key=f"k8s-{key}",
                       protected=[d.app_name for d in declared_versions(config)])
