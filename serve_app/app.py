"""Build the Ray Serve application from the gateway config: one deployment per model, the gateway in front."""

from __future__ import annotations

from ray.serve import Application

from serve_app.config import GatewayConfig, ModelConfig, Task


def resolve_num_gpus(requested: float | str, gpus_in_cluster: float) -> float:
    """'auto' takes one GPU per replica when the cluster has any; an explicit number is kept as given."""
    if requested == "auto":
        return 1.0 if gpus_in_cluster >= 1 else 0.0
    return float(requested)


def model_spec(config: GatewayConfig, model: ModelConfig) -> dict:
    """What a model deployment needs, as plain JSON: its config plus the resolved folder."""
    return {**model.model_dump(mode="json"), "path": str(config.source_of(model))}


def deployment_options(model: ModelConfig, gpus_in_cluster: float) -> dict:
    res = model.resources
    actor = {"num_cpus": res.num_cpus, "num_gpus": resolve_num_gpus(res.num_gpus, gpus_in_cluster)}
    return {
        "name": model.name,
        "num_replicas": res.replicas,
        "max_ongoing_requests": model.max_ongoing_requests,
        "ray_actor_options": actor,
    }


def build_app(config: GatewayConfig, gpus_in_cluster: float = 0.0) -> Application:
    # Imported here so the pure config/dataplane modules stay importable without Ray.
    from deployments.classifier import ClassifierDeployment
    from deployments.router import Gateway
    from deployments.summarizer import SummarizerDeployment

    kinds = {Task.classification: ClassifierDeployment, Task.summarization: SummarizerDeployment}
    handles = {
        m.name: kinds[m.task].options(**deployment_options(m, gpus_in_cluster)).bind(model_spec(config, m))
        for m in config.models
    }
    server = config.server
    return Gateway.options(
        name="gateway",
        num_replicas=server.ingress_replicas,
        max_ongoing_requests=1000,
        ray_actor_options={"num_cpus": server.ingress_num_cpus},
    ).bind(config.model_dump(mode="json"), handles)
