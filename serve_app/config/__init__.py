"""The gateway's one configuration: a YAML file validated by pydantic.

A config error names the field and says how to fix it, e.g.
    models[0].resources.num_cpus: Input should be greater than 0 (fix: give a fraction such as 0.25; ...)
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from serve_app.pipelines.spec import Pipeline
from serve_app.pipelines.validate import PipelineError, check_pipelines
from serve_app.config.settings import GatewaySettings

NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"


class ConfigError(ValueError):
    """The gateway config is invalid; the message lists every problem with its field path."""


class Task(StrEnum):
    classification = "classification"
    summarization = "summarization"
    identity = "identity"  # returns its input (after delay_ms): a no-op model for measuring hops


class Runtime(StrEnum):
    auto = "auto"  # what the model folder asks for: onnx for an ONNX variant (runtime.json), else torch
    torch = "torch"
    onnx = "onnx"  # classifiers only: onnxruntime (CPU, or CUDA with onnxruntime-gpu)


class _Strict(BaseModel):
    # Unknown keys are almost always typos ("num_cpu"); refuse them instead of ignoring them.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Batching(_Strict):
    """Dynamic batching (`@serve.batch`) of concurrent requests inside one replica."""

    max_batch_size: Annotated[int, Field(ge=1, le=256)] = 16
    # How long a batch with a free run slot waits for more requests. Under load batches fill without it (a
    # batch forms when a slot frees, from everything queued meanwhile); 0 means a lone request runs at once.
    batch_wait_timeout_s: Annotated[float, Field(ge=0, le=5)] = 0.01
    # Batches one replica runs at once, each in its own thread. With 2, a replica keeps both cores busy with
    # one intra-op thread per batch under load, and gives a lone batch all its `threads` (classifiers).
    max_concurrent_batches: Annotated[int, Field(ge=1, le=16)] = 1
    # The ingress merges concurrent requests for one version into one model call (one hop per batch, not per
    # request). None: on for classifiers; identity models keep one call per request (their tests count calls).
    coalesce: bool | None = None


class Autoscaling(_Strict):
    """Ray Serve replica autoscaling (its `autoscaling_config`): replicas follow the requests in flight.

    Replicas are added when the average ongoing requests per replica stay above `target_ongoing_requests` for
    `upscale_delay_s`, and removed when they stay below it for `downscale_delay_s`. On KubeRay the in-tree
    autoscaler then adds or removes worker pods for replicas that do not fit.
    """

    min_replicas: Annotated[int, Field(ge=1, le=64)] = 1
    max_replicas: Annotated[int, Field(ge=1, le=64)] = 2
    initial_replicas: Annotated[int, Field(ge=1, le=64)] | None = None
    target_ongoing_requests: Annotated[float, Field(gt=0, le=10_000)] = 2.0
    upscale_delay_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    downscale_delay_s: Annotated[float, Field(ge=0, le=3600)] = 600.0
    # The window the request counts are averaged over.
    look_back_period_s: Annotated[float, Field(gt=0, le=3600)] = 30.0

    @model_validator(mode="after")
    def _bounds_in_order(self) -> Autoscaling:
        initial = self.initial_replicas if self.initial_replicas is not None else self.min_replicas
        if not self.min_replicas <= initial <= self.max_replicas:
            raise ValueError(f"need min_replicas <= initial_replicas <= max_replicas, got {self.min_replicas}, "
                             f"{initial}, {self.max_replicas}")
        return self


class Resources(_Strict):
    """What one replica asks Ray for. `num_gpus: auto` takes one GPU per replica when the cluster has GPUs."""

    replicas: Annotated[int, Field(ge=1, le=64)] = 1
    # Whole CPUs on a 2-core machine leave replicas unscheduled and requests hanging: default to a fraction.
    num_cpus: Annotated[float, Field(gt=0, le=64)] = 0.5
    num_gpus: Annotated[float, Field(ge=0, le=8)] | Literal["auto"] = "auto"
    # Intra-op threads of torch in each replica; None keeps Ray's choice (its CPU share, at least 1).
    threads: Annotated[int, Field(ge=1, le=256)] | None = None
    # Ray Serve's default (5) silently caps @serve.batch; derived from batching when unset.
    max_ongoing_requests: Annotated[int, Field(ge=1, le=10_000)] | None = None
    # Requests waiting at the ingress for a busy replica beyond this answer 429 with Retry-After at once,
    # instead of queueing without bound. None: no limit (Ray Serve's default).
    max_queued_requests: Annotated[int, Field(ge=1, le=100_000)] | None = None
    # A queue bounded by time: a request whose expected wait for a slot (queue ahead x measured service time /
    # concurrency) exceeds this is refused at once with 429 and Retry-After (serve_app/dataplane/admission.py). Requests
    # are always refused when the expected wait exceeds their own deadline. None: the deadline only.
    max_queue_wait_s: Annotated[float, Field(gt=0, le=3600)] | None = None
    # Replicas that follow the load; replaces a fixed `replicas` (which must then stay 1, its default).
    autoscaling: Autoscaling | None = None

    @model_validator(mode="after")
    def _replicas_or_autoscaling(self) -> Resources:
        if self.autoscaling is not None and self.replicas != 1:
            raise ValueError("give either 'replicas' or 'autoscaling' (min_replicas/max_replicas), not both")
        return self


class Generation(_Strict):
    """Decoding settings for summarizers. Greedy by default so answers are reproducible."""

    max_new_tokens: Annotated[int, Field(ge=1, le=1024)] = 64
    max_new_tokens_limit: Annotated[int, Field(ge=1, le=2048)] = 256
    do_sample: bool = False
    # Continuous batching (decoder-only models): sequences decoded together, and prompt tokens prefilled per
    # engine iteration (smaller: running streams stall less while a long prompt is read; larger: faster prefill).
    max_running: Annotated[int, Field(ge=1, le=256)] = 8
    prefill_chunk: Annotated[int, Field(ge=8, le=4096)] = 64

    @model_validator(mode="after")
    def _default_within_limit(self) -> Generation:
        if self.max_new_tokens > self.max_new_tokens_limit:
            raise ValueError(
                f"max_new_tokens ({self.max_new_tokens}) is above max_new_tokens_limit "
                f"({self.max_new_tokens_limit}); lower it or raise the limit"
            )
        return self


class ModelConfig(_Strict):
    """A served model: either a folder (`source`) or versions of the registry model of the same name."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    task: Task
    # A checkpoint folder (path or file://) served as is, named by its content hash. None: use the registry.
    source: Annotated[str, Field(min_length=1)] | None = None
    runtime: Runtime = Runtime.auto
    # Registry selector after the '@': an iteration (7), alias (stable), hash prefix (sha256:3fa1) or UTC time.
    version: Annotated[str, Field(min_length=1, max_length=80)] = "latest"
    # Traffic split between registry versions: selector -> weight (normalised). Replaces `version`.
    traffic: dict[str, Annotated[float, Field(gt=0)]] | None = None
    # The registry model to serve, when it differs from `name` (e.g. a variant with another max_length).
    registry_model: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    # identity models only: how long each call sleeps.
    delay_ms: Annotated[float, Field(ge=0, le=60_000)] = 0.0
    # Inputs longer than this many tokens are truncated (and the response says so). None: the model's own limit.
    max_length: Annotated[int, Field(ge=8, le=32_768)] | None = None
    batching: Batching = Batching()
    resources: Resources = Resources()
    generation: Generation | None = None

    @model_validator(mode="after")
    def _generation_only_for_summarizers(self) -> ModelConfig:
        if self.generation is not None and self.task is not Task.summarization:
            raise ValueError("'generation' applies to task 'summarization' only; remove it")
        return self

    @model_validator(mode="after")
    def _traffic_needs_the_registry(self) -> ModelConfig:
        if self.traffic is not None:
            if self.source is not None:
                raise ValueError("'traffic' splits registry versions; remove 'source' or 'traffic'")
            if not self.traffic:
                raise ValueError("'traffic' needs at least one selector: weight entry")
        return self

    @model_validator(mode="after")
    def _identity_has_no_files(self) -> ModelConfig:
        if self.task is Task.identity and (self.source or self.traffic or self.registry_model):
            raise ValueError("identity models have no files: remove source, traffic and registry_model")
        if self.task is not Task.identity and self.delay_ms:
            raise ValueError("'delay_ms' applies to task 'identity' only")
        return self

    @model_validator(mode="after")
    def _onnx_only_for_classifiers(self) -> ModelConfig:
        if self.runtime is Runtime.onnx and self.task is not Task.classification:
            raise ValueError("runtime 'onnx' serves classifiers only; use 'torch' or 'auto'")
        return self

    @property
    def registry_name(self) -> str:
        return self.registry_model or self.name

    @property
    def selectors(self) -> dict[str, float]:
        """Registry selectors to serve at start, with their traffic weights."""
        return dict(self.traffic) if self.traffic else {self.version: 1.0}

    @property
    def coalesces(self) -> bool:
        explicit = self.batching.coalesce
        return explicit if explicit is not None else self.task is Task.classification

    @property
    def calls_in_flight(self) -> int:
        """Model calls one ingress replica keeps in flight when coalescing: every run slot of every replica plus
        one waiting call per replica, so a replica never idles through a round trip between batches (what
        waits there merges with what arrives next). At the autoscaling maximum, so queued calls still show
        Ray's autoscaler the load."""
        scaling = self.resources.autoscaling
        replicas = scaling.max_replicas if scaling is not None else self.resources.replicas
        return replicas * (self.batching.max_concurrent_batches + 1)

    @property
    def max_ongoing_requests(self) -> int:
        explicit = self.resources.max_ongoing_requests
        return explicit if explicit is not None else max(32, 2 * self.batching.max_batch_size)

    def resolved_source(self, models_dir: Path) -> Path | None:
        if self.source is None:
            return None
        path = Path(self.source.removeprefix("file://"))
        return path if path.is_absolute() else (models_dir / path).resolve()


class Limits(_Strict):
    """Request limits, enforced before anything reaches a model."""

    max_texts: Annotated[int, Field(ge=1, le=10_000)] = 64
    max_text_chars: Annotated[int, Field(ge=1, le=10_000_000)] = 100_000
    max_body_bytes: Annotated[int, Field(ge=1024, le=1_073_741_824)] = 8 * 1024 * 1024
    # Deadline of a request that names none (X-Request-Timeout header / x-request-timeout gRPC metadata),
    # and the most a request may ask for (larger asks are cut to it). Past it: 504 / DEADLINE_EXCEEDED.
    request_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    max_request_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 300.0

    @model_validator(mode="after")
    def _default_within_max(self) -> Limits:
        if self.request_timeout_s > self.max_request_timeout_s:
            raise ValueError(f"request_timeout_s ({self.request_timeout_s}) is above max_request_timeout_s "
                             f"({self.max_request_timeout_s}); lower it or raise the maximum")
        return self


class RegistryConfig(_Strict):
    """Where registered versions live and where replicas cache them. S3 credentials: prefer the standard
    AWS environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) over writing them here."""

    uri: Annotated[str, Field(min_length=1)] = "registry"
    cache_dir: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    key: str | None = None
    secret: str | None = None

    def options(self) -> dict:
        return {k: v for k, v in self.model_dump(include={"endpoint_url", "region", "key", "secret"}).items() if v}


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    http_port: Annotated[int, Field(ge=1, le=65535)] = 8000
    # OIP gRPC (inference.GRPCInferenceService) through Ray Serve's gRPC proxy; 0 turns it off.
    grpc_port: Annotated[int, Field(ge=0, le=65535)] = 9000
    limits: Limits = Limits()
    ingress_num_cpus: Annotated[float, Field(gt=0, le=16)] = 0.1
    # Record gateway metrics through Ray (off: nothing is recorded; for measuring their overhead).
    metrics: bool = True
    # One access-log line per request at the ingress (Ray Serve's default is on). Off by default: the request
    # counters and latency histograms carry the same facts, and the line costs CPU on every request.
    access_log: bool = False
    # Admin endpoints (load/unload, traffic) change the state of the replica that answers: keep one ingress.
    ingress_replicas: Annotated[int, Field(ge=1, le=1)] = 1


class GatewayConfig(_Strict):
    server: ServerConfig = ServerConfig()
    registry: RegistryConfig = RegistryConfig()
    models: Annotated[list[ModelConfig], Field(min_length=1)]
    pipelines: list[Pipeline] = []
    # Where relative model sources resolve; filled from settings, not usually written in YAML.
    models_dir: Path = Path("models")

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        seen: set[str] = set()
        for m in models:
            if m.name in seen:
                raise ValueError(f"model name '{m.name}' appears twice; names must be unique")
            seen.add(m.name)
        return models

    @model_validator(mode="after")
    def _pipelines_fit_the_models(self) -> GatewayConfig:
        try:
            check_pipelines(self.pipelines, {m.name: m.task.value for m in self.models})
        except PipelineError as err:
            raise ValueError(str(err)) from None
        return self

    def pipeline(self, name: str) -> Pipeline | None:
        return next((p for p in self.pipelines if p.name == name), None)

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)

    def default_model(self, task: Task) -> ModelConfig | None:
        return next((m for m in self.models if m.task is task), None)

    def source_of(self, model: ModelConfig) -> Path | None:
        return model.resolved_source(self.models_dir)

    def registry_uri(self) -> str:
        """Relative local registry paths resolve like model sources: against models_dir's parent folder."""
        uri = self.registry.uri
        if "://" in uri or Path(uri).is_absolute():
            return uri
        return str((self.models_dir.parent / uri).resolve())

    def cache_dir(self) -> Path:
        if self.registry.cache_dir:
            return Path(self.registry.cache_dir)
        return self.models_dir.parent / ".cache" / "models"


# Hints appended to pydantic's message, keyed by the last element of the field path.
_FIXES = {
    "num_cpus": "give a fraction such as 0.25; whole CPUs on a small machine leave replicas unscheduled",
    "num_gpus": "use 'auto', 0 for CPU only, or a number of GPUs per replica",
    "task": "use one of: " + ", ".join(t.value for t in Task),
    "runtime": "use one of: " + ", ".join(r.value for r in Runtime),
    "name": "use lowercase letters, digits, '-' or '_', starting with a letter",
    "models": "list at least one model, each with name, task and source",
}


def _hint(loc: tuple) -> str | None:
    """The fix for the innermost named field (union branches add names like "literal['auto']" after it)."""
    for part in reversed(loc):
        if isinstance(part, int):
            return None
        if part in _FIXES:
            return _FIXES[part]
    return None


def _format(err: ValidationError, origin: str) -> str:
    lines = [f"invalid gateway config ({origin}):"]
    for e in err.errors():
        path = ""
        for part in e["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling against the README's config reference)"
        hint = None if e["type"] == "extra_forbidden" else _hint(e["loc"])
        lines.append(f"  {path or '<root>'}: {msg}" + (f" (fix: {hint})" if hint else ""))
    return "\n".join(lines)


def parse_config(data: object, origin: str = "<dict>", settings: GatewaySettings | None = None) -> GatewayConfig:
    """Validate a config mapping and apply environment overrides from `settings`."""
    settings = settings or GatewaySettings()
    if not isinstance(data, dict):
        raise ConfigError(f"invalid gateway config ({origin}): the top level must be a mapping with 'models'")
    data = _apply_overrides(dict(data), settings)
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format(err, origin)) from None


def load_config(path: Path | str | None = None, settings: GatewaySettings | None = None) -> GatewayConfig:
    settings = settings or GatewaySettings()
    path = Path(path or settings.config)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"gateway config not found: {path} (fix: pass --config or set GATEWAY_CONFIG)") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"gateway config {path} is not valid YAML: {err}") from None
    return parse_config(data, str(path), settings)


def _apply_overrides(data: dict, settings: GatewaySettings) -> dict:
    server = dict(data.get("server") or {})
    if settings.host is not None:
        server["host"] = settings.host
    if settings.http_port is not None:
        server["http_port"] = settings.http_port
    if settings.grpc_port is not None:
        server["grpc_port"] = settings.grpc_port
    data["server"] = server
    data.setdefault("models_dir", str(settings.models_dir))
    if settings.registry_uri is not None:
        data["registry"] = {**(data.get("registry") or {}), "uri": settings.registry_uri}
    if settings.num_gpus is not None and isinstance(data.get("models"), list):
        data["models"] = [
            {**m, "resources": {**(m.get("resources") or {}), "num_gpus": settings.num_gpus}}
            if isinstance(m, dict) else m
            for m in data["models"]
        ]
    return data

