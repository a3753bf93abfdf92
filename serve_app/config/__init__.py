"""The gateway's one configuration: a YAML file validated by pydantic.

A config error names the field and says how to fix it, e.g.
    models[0].resources.num_cpus: Input should be greater than 0 (fix: give a fraction such as 0.25; ...)

`model.py` holds a served model's section, `server.py` the server's and the registry's, `settings.py` the
environment overrides (GATEWAY_*); this module the whole file and how it is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from serve_app.config.model import (
    NAME_PATTERN,
    Autoscaling,
    Batching,
    Generation,
    ModelConfig,
    Resources,
    Runtime,
    Strict,
    Task,
)
from serve_app.config.server import Limits, RegistryConfig, ServerConfig
from serve_app.config.settings import GatewaySettings
from serve_app.pipelines.spec import Pipeline
from serve_app.pipelines.validate import PipelineError, check_pipelines

__all__ = ["NAME_PATTERN", "Autoscaling", "Batching", "ConfigError", "GatewayConfig", "Generation", "Limits",
           "ModelConfig", "RegistryConfig", "Resources", "Runtime", "ServerConfig", "Task", "load_config",
           "parse_config"]


class ConfigError(ValueError):
    """The gateway config is invalid; the message lists every problem with its field path."""


class GatewayConfig(Strict):
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
            check_pipelines(self.pipelines, {m.name: m.task for m in self.models})
        except PipelineError as err:
            raise ValueError(str(err)) from None
        return self

    def pipeline(self, name: str) -> Pipeline | None:
        return next((p for p in self.pipelines if p.name == name), None)

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)

    def default_model(self, task: str) -> ModelConfig | None:
        return next((m for m in self.models if m.task == task), None)

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
