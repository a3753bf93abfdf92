"""A model version as a Ray Serve application: the deployment class its task contract names, with the options
the plan computed. The only place a task meets its deployment class, so the pure core never imports Ray."""

from __future__ import annotations

from importlib import import_module

from serve_app.config import ModelConfig
from serve_app.plan import deployment_options
from serve_app.tasks import contract


def deployment_class(model: ModelConfig):
    if model.multiplex is not None:
        from deployments.multiplexed import MultiplexedDeployment

        return MultiplexedDeployment
    module, _, name = contract(model.task).deployment.partition(":")
    return getattr(import_module(module), name)


def version_app(model: ModelConfig, spec: dict, gpus_in_cluster: float):
    return deployment_class(model).options(**deployment_options(model, gpus_in_cluster)).bind(spec)
