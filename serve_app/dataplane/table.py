"""What the gateway serves right now: the config, each model's loaded versions and traffic, and the lookups
every part of the dataplane shares (with the errors a client gets for unknown names)."""

from __future__ import annotations

import time

from serve_app.config import GatewayConfig, ModelConfig
from serve_app.dataplane.admission import Admission
from serve_app.dataplane.cache import ResponseCache
from serve_app.dataplane.routing import ModelRoutes, VersionEntry
from serve_app.dataplane.selection import Candidate, LatencyFeed
from serve_app.dataplane.shadow import Mirrors
from serve_app.errors import InvalidInput, ModelNotFound
from serve_app.metrics import Metrics, NullMetrics
from serve_app.pipelines.spec import Pipeline
from serve_app.tasks import contract, streaming_tasks


class ModelTable:
    def __init__(self, config: GatewayConfig, routes: dict[str, ModelRoutes], metrics: Metrics | None = None):
        missing = {m.name for m in config.models} - set(routes)
        if missing:
            raise ValueError(f"no routes for configured models: {sorted(missing)}")
        self.config = config
        self.routes = routes
        self.revision = 0  # of the shared routing state these routes follow (dataplane/shared_state.py)
        self.replica = ""  # this ingress replica's id, where there are several
        self.metrics = metrics or NullMetrics()
        self.admission = Admission()
        self.mirrors = Mirrors(self)  # shadow traffic per model (dataplane/shadow.py), set by the routing state
        self.feed = LatencyFeed(time.monotonic)  # per "model@label": live latency and queue, for selection
        # Response caches: "model" for direct calls, "pipeline:<name>" for the model calls of a pipeline's nodes.
        self.caches = {m.name: ResponseCache(m.cache.max_bytes, m.cache.ttl_s) for m in config.models if m.cache}
        self.caches |= {f"pipeline:{p.name}": ResponseCache(p.cache.max_bytes, p.cache.ttl_s)
                        for p in config.pipelines if p.cache}
        for name in routes:
            self.publish_versions(name)

    def publish_versions(self, name: str) -> None:
        self.metrics.set("gateway_loaded_versions", {"model": name}, len(self.routes[name].versions))

    def cache_for(self, model: str, pipeline: str = "") -> ResponseCache | None:
        return self.caches.get(f"pipeline:{pipeline}") if pipeline else self.caches.get(model)

    @staticmethod
    def cache_space(model: str, entry: VersionEntry) -> str:
        """The key space of one version's answers: its content hash (a new version starts empty)."""
        return f"{model}@{entry.content_hash or 'label:' + entry.label}"

    def forget_answers(self, model: str, entry: VersionEntry) -> None:
        """An unloaded version's answers leave every cache (the model's and the pipelines')."""
        for cache in self.caches.values():
            cache.drop_version(self.cache_space(model, entry))

    def candidates(self, model: str) -> list[Candidate]:
        """Every loaded version of a model as a selection candidate, with its expected latency now."""
        return [Candidate(label, e.accuracy, e.gated, self.feed.expected_ms(f"{model}@{label}"))
                for label, e in self.routes[model].versions.items()]

    def model(self, name: str) -> ModelConfig:
        model = self.config.model(name)
        if model is None:
            known = ", ".join(m.name for m in self.config.models)
            raise ModelNotFound(f"model '{name}' is not served; known models: {known}")
        return model

    def is_model(self, name: str) -> bool:
        return self.config.model(name) is not None

    def is_pipeline(self, name: str) -> bool:
        return self.config.model(name) is None and self.config.pipeline(name) is not None

    def check_served(self, name: str) -> None:
        """ModelNotFound unless `name` is a model or a pipeline (OIP addresses both by name)."""
        if not self.is_model(name) and not self.is_pipeline(name):
            raise ModelNotFound(f"model '{name}' is not served")

    def for_task(self, requested: str | None, task: str) -> tuple[ModelConfig, str | None]:
        """The model a task's route addresses (its default model when unnamed) and the version pinned with
        "name@version", if any."""
        name, _, pinned = (requested or "").partition("@")
        model = self.model(name) if name else self.config.default_model(task)
        if model is None:
            raise ModelNotFound(f"no {task} model is configured")
        if model.task != task:
            raise InvalidInput(f"model '{model.name}' does {model.task}, not {task}", field="model")
        return model, (pinned or None)

    def for_stream(self, requested: str | None, task: str | None = None) -> tuple[ModelConfig, str | None]:
        """The model a token stream addresses: by a task's route (`task`), or by name for any task that streams
        (OpenAI, OIP generate, gRPC streams); unnamed, the first configured model of a streaming task."""
        if task is not None:
            return self.for_task(requested, task)
        streaming = streaming_tasks()
        name, _, pinned = (requested or "").partition("@")
        model = self.model(name) if name else next((m for m in self.config.models if m.task in streaming), None)
        if model is None:
            raise ModelNotFound("no model of a task that streams is configured")
        if not contract(model.task).streams:
            raise InvalidInput(f"model '{model.name}' does {model.task}, not {' or '.join(streaming)}",
                               field="model")
        return model, (pinned or None)

    def pipeline(self, name: str) -> Pipeline:
        pipeline = self.config.pipeline(name)
        if pipeline is None:
            known = ", ".join(p.name for p in self.config.pipelines) or "none"
            raise ModelNotFound(f"pipeline '{name}' is not configured; known pipelines: {known}")
        return pipeline

    def loaded(self, name: str) -> list[str]:
        """Labels of the loaded versions of a model, sorted."""
        return sorted(self.routes[name].versions)

    def task_of(self) -> dict[str, str]:
        return {m.name: str(m.task) for m in self.config.models}
