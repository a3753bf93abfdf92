"""The transport-agnostic core: validate a request, pick the model, call it, shape the answer.

HTTP (and later gRPC) adapters only decode bytes into a body, call the dataplane, and encode what it returns
or the `GatewayError` it raises. Models are reached through `ModelBackend`, so the dataplane runs the same
against Ray Serve handles in production and against in-process models in unit tests.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from pydantic import ValidationError

from serve_app.dataplane.admission import Admission
from serve_app.config import GatewayConfig, Generation, ModelConfig, Task
from serve_app.errors import (
    DeadlineExceeded,
    GatewayError,
    InferenceFailed,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    PayloadTooLarge,
)
from serve_app.dataplane.generation import GenerationStream, check_params
from serve_app.metrics import Metrics, NullMetrics
from serve_app.pipelines.engine import run_pipeline
from serve_app.pipelines.validate import models_used, output_fields
from serve_app.dataplane.routing import ModelRoutes, VersionEntry
from serve_app.protocols.schemas import ClassifyRequest, PipelineRequest, SummarizeRequest

READY_TIMEOUT_S = 2.0
# When the request being served must be answered (time.monotonic()), set by DataPlane.within: admission
# refuses a model call that would wait past it.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("gateway_deadline", default=None)


class ModelBackend(Protocol):
    """What the dataplane needs from one served model version."""

    async def infer(self, texts: list[str], params: dict) -> dict:
        """Return {"results": [...one per text...], "version": ..., "max_length": ...}."""

    async def info(self) -> dict:
        """Return {"version": ..., "content_hash": ..., "max_length": ..., ...}."""


class ModelManager(Protocol):
    """Starts and stops model versions at run time (Ray Serve applications in production)."""

    async def load(self, model: ModelConfig, selector: str) -> tuple[str, ModelBackend]:
        """Deploy the registry version `selector` of `model`; return its label and backend."""

    async def unload(self, model: ModelConfig, label: str) -> None:
        """Stop the deployed version `label` of `model`."""


def _describe(error: dict, schema) -> tuple[str, str]:
    where = ".".join(str(p) for p in error["loc"]) or "body"
    if error["type"] == "extra_forbidden":
        return where, f"{where}: unknown field; allowed: " + ", ".join(schema.model_fields)
    return where, f"{where}: {error['msg']}"


@dataclass
class Answer:
    body: dict
    headers: dict[str, str]


class DataPlane:
    def __init__(self, config: GatewayConfig, routes: dict[str, ModelRoutes], manager: ModelManager | None = None,
                 metrics: Metrics | None = None):
        missing = {m.name for m in config.models} - set(routes)
        if missing:
            raise ValueError(f"no routes for configured models: {sorted(missing)}")
        self.config = config
        self.routes = routes
        self.manager = manager
        self.metrics = metrics or NullMetrics()
        self.admission = Admission()
        # The traffic split the gateway started with, per model: what loading a version back restores.
        self.configured = {name: {label: e.weight for label, e in r.versions.items() if e.weight > 0}
                           for name, r in routes.items()}
        self._split_by_hand: set[str] = set()  # models whose traffic an admin has set since
        for name in routes:
            self._publish_versions(name)

    def _publish_versions(self, name: str) -> None:
        self.metrics.set("gateway_loaded_versions", {"model": name}, len(self.routes[name].versions))

    @asynccontextmanager
    async def _observed(self, labels: dict[str, str]):
        """Time a request and count its error kind; `labels` is filled in as the target becomes known."""
        started = time.perf_counter()
        try:
            yield
        except GatewayError as err:
            self.metrics.inc("gateway_errors", {**labels, "kind": err.kind})
            raise
        except Exception:
            self.metrics.inc("gateway_errors", {**labels, "kind": "internal"})
            raise
        self.metrics.observe("gateway_request_duration_seconds", labels, time.perf_counter() - started)

    # -- deadlines ----------------------------------------------------------------------------------------
    def deadline_s(self, requested: str | None) -> float:
        """A request's deadline in seconds from what it asked for (text, seconds), within the configured bounds."""
        limits = self.config.server.limits
        if requested is None or not requested.strip():
            return limits.request_timeout_s
        try:
            value = float(requested)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= 0:
            raise InvalidInput(f"request timeout {requested[:40]!r}: give a positive number of seconds, at most "
                               f"{limits.max_request_timeout_s:g}", field="timeout")
        return min(value, limits.max_request_timeout_s)

    async def within(self, timeout_s: float, work):
        """Run `work` under a deadline. Past it the work is cancelled (and with it the model calls it awaits,
        which Ray Serve cancels in turn) and the client gets 504 / DEADLINE_EXCEEDED."""
        token = _DEADLINE.set(time.monotonic() + timeout_s)
        try:
            return await asyncio.wait_for(work, timeout_s)
        except TimeoutError:
            self.metrics.inc("gateway_errors", {"model": "", "pipeline": "", "kind": DeadlineExceeded.kind})
            raise DeadlineExceeded(f"the request did not finish within its deadline of {timeout_s:g} s") from None
        finally:
            _DEADLINE.reset(token)

    # -- decoding -----------------------------------------------------------------------------------------
    def decode_json(self, raw: bytes) -> object:
        limits = self.config.server.limits
        if len(raw) > limits.max_body_bytes:
            raise PayloadTooLarge(f"request body is {len(raw)} bytes; the limit is {limits.max_body_bytes}")
        if not raw.strip():
            raise InvalidInput("request body is empty; send a JSON object such as {\"texts\": [\"...\"]}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InvalidInput(f"request body is not valid UTF-8 (byte {err.start})") from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise InvalidInput(f"request body is not valid JSON: {err.msg} at line {err.lineno} "
                               f"column {err.colno}") from None

    def parse(self, schema, body: object):
        """`body` validated against a request schema; InvalidInput names the first problems."""
        return self._parse(schema, body)

    def _parse(self, schema, body: object):
        if not isinstance(body, dict):
            raise InvalidInput("request body must be a JSON object such as {\"texts\": [\"...\"]}")
        try:
            req = schema.model_validate(body)
        except ValidationError as err:
            problems = [_describe(e, schema) for e in err.errors()[:5]]
            raise InvalidInput("; ".join(p for _, p in problems), field=problems[0][0]) from None
        self.check_texts(req.texts)
        return req

    def check_texts(self, texts: list[str]) -> None:
        """The request limits every protocol shares."""
        limits = self.config.server.limits
        if not texts:
            raise InvalidInput("texts: send at least one text", field="texts")
        if len(texts) > limits.max_texts:
            raise InvalidInput(f"texts: {len(texts)} texts in one request; the limit is {limits.max_texts}",
                               field="texts")
        for i, t in enumerate(texts):
            if not t.strip():
                raise InvalidInput(f"texts.{i}: text is empty", field=f"texts.{i}")
            if len(t) > limits.max_text_chars:
                raise InvalidInput(f"texts.{i}: text has {len(t)} characters; the limit is "
                                   f"{limits.max_text_chars}", field=f"texts.{i}")

    def _config_of(self, name: str) -> ModelConfig:
        model = self.config.model(name)
        if model is None:
            known = ", ".join(m.name for m in self.config.models)
            raise ModelNotFound(f"model '{name}' is not served; known models: {known}")
        return model

    def _model(self, requested: str | None, task: Task) -> tuple[ModelConfig, str | None]:
        """The model config and the pinned version (from "name@version"), if any."""
        name, _, pinned = (requested or "").partition("@")
        model = self._config_of(name) if name else self.config.default_model(task)
        if model is None:
            raise ModelNotFound(f"no {task.value} model is configured")
        if model.task is not task:
            raise InvalidInput(f"model '{model.name}' does {model.task.value}, not {task.value}", field="model")
        return model, (pinned or None)

    # -- operations ---------------------------------------------------------------------------------------
    async def classify(self, body: object) -> Answer:
        labels = {"model": "", "pipeline": ""}
        async with self._observed(labels):
            req = self._parse(ClassifyRequest, body)
            model, pinned = self._model(req.model, Task.classification)
            labels["model"] = model.name
            out = await self._call(model, pinned, req.texts, {})
        return self._answer(model, out)

    async def summarize(self, body: object) -> Answer:
        labels = {"model": "", "pipeline": ""}
        async with self._observed(labels):
            req = self._parse(SummarizeRequest, body)
            model, pinned = self._model(req.model, Task.summarization)
            labels["model"] = model.name
            out = await self._call(model, pinned, req.texts, {"max_new_tokens": req.max_new_tokens})
        return self._answer(model, out)

    @staticmethod
    def _answer(model: ModelConfig, out: dict) -> Answer:
        headers = {"X-Model-Name": model.name, "X-Model-Version": str(out.get("version", ""))}
        return Answer({"model": model.name, **out}, headers)

    def _params(self, model: ModelConfig, requested: dict) -> dict:
        """Model parameters with the config's defaults, checked against its limits."""
        if model.task is not Task.summarization:
            return {}
        gen = model.generation or Generation()
        n = requested.get("max_new_tokens")
        n = gen.max_new_tokens if n is None else n
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= gen.max_new_tokens_limit:
            raise InvalidInput(f"max_new_tokens: must be between 1 and {gen.max_new_tokens_limit}, got {n}",
                               field="max_new_tokens")
        return {"max_new_tokens": n}

    async def _call(self, model: ModelConfig, pinned: str | None, texts: list[str], params: dict,
                    pipeline: str = "") -> dict:
        """Pick the version (pinned, or by traffic split) and call it with checked parameters."""
        params = self._params(model, params)
        entry = self.routes[model.name].pick(pinned)
        deadline = _DEADLINE.get()
        ticket = self.admission.controller(model, entry.label).admit(
            None if deadline is None else deadline - time.monotonic())  # Overloaded (429) when the wait is too long
        ok = False
        try:
            out = await entry.backend.infer(texts, params)
            ok = True
        except GatewayError:
            raise
        except Exception:  # noqa: BLE001 - the cause is logged by the replica; clients get a generic message
            raise InferenceFailed(f"model '{model.name}' failed to answer; see the server log") from None
        finally:
            ticket.done(ok)
        self.metrics.inc("gateway_requests", {"model": model.name, "version": entry.label, "pipeline": pipeline})
        return out

    # -- token streams ------------------------------------------------------------------------------------
    async def open_stream(self, requested: str | None, request: dict, deadline_s: float) -> GenerationStream:
        """Start a generation on a summarization model (`name` or `name@version`) and wait for the replica to
        accept the prompt: errors up to then are typed errors (an HTTP status), later ones arrive in the stream.
        `request` is the dict `serve_app.dataplane.generation` describes, with unchecked "params"."""
        model, pinned = self._model(requested, Task.summarization)
        gen = model.generation or Generation()
        request = {**request, "params": check_params(request.get("params") or {}, gen.max_new_tokens,
                                                     gen.max_new_tokens_limit), "deadline_s": deadline_s}
        entry = self.routes[model.name].pick(pinned)
        if not hasattr(entry.backend, "stream"):
            raise InvalidInput(f"model '{model.name}' cannot stream", field="stream")
        events = entry.backend.stream(request)
        try:
            start = await anext(events)
        except GatewayError:
            raise
        except Exception:  # noqa: BLE001 - the cause is logged by the replica
            raise InferenceFailed(f"model '{model.name}' failed to answer; see the server log") from None
        if start["type"] == "error":
            await events.aclose()
            raise InvalidInput(start["message"])
        self.metrics.inc("gateway_requests", {"model": model.name, "version": entry.label, "pipeline": ""})
        return GenerationStream(model.name, str(start.get("version", entry.label)), start, events)

    async def infer_texts(self, name: str, version: str | None, texts: list[str], params: dict) -> tuple[list, str]:
        """(records, version) for a model or a pipeline addressed by name, as the OIP/TF adapters need."""
        is_pipeline = self.config.model(name) is None and self.config.pipeline(name) is not None
        labels = {"model": "" if is_pipeline or self.config.model(name) is None else name,
                  "pipeline": name if is_pipeline else ""}
        async with self._observed(labels):
            self.check_texts(texts)
            if is_pipeline:
                records, _ = await self._run_graph(name, texts)
                return records, ""
            out = await self._call(self._config_of(name), version, texts, params)
        return out["results"], str(out.get("version", ""))

    async def call_model(self, ref: str, texts: list[str], params: dict, pipeline: str = "") -> dict:
        """One model call for the pipeline engine: `ref` is a model name, optionally pinned (`name@3`)."""
        name, _, pinned = ref.partition("@")
        return await self._call(self._config_of(name), pinned or None, texts, params, pipeline)

    async def _run_graph(self, name: str, texts: list[str]) -> tuple[list, list]:
        pipelines = {p.name: p for p in self.config.pipelines}
        records, trace = await run_pipeline(pipelines, partial(self.call_model, pipeline=name), name, texts)
        for entry in trace:
            self.metrics.observe("gateway_pipeline_node_duration_seconds", {"pipeline": name, "node": entry["node"]},
                                 entry["latency_ms"] / 1000)
        return records, trace

    # -- pipelines ----------------------------------------------------------------------------------------
    def _pipeline(self, name: str):
        pipeline = self.config.pipeline(name)
        if pipeline is None:
            known = ", ".join(p.name for p in self.config.pipelines) or "none"
            raise ModelNotFound(f"pipeline '{name}' is not configured; known pipelines: {known}")
        return pipeline

    async def run_pipeline(self, name: str, body: object) -> Answer:
        pipeline = self._pipeline(name)
        async with self._observed({"model": "", "pipeline": pipeline.name}):
            req = self._parse(PipelineRequest, body)
            records, trace = await self._run_graph(pipeline.name, req.texts)
        answer = {"pipeline": name, "results": records}
        if req.trace:
            answer["trace"] = trace
        return Answer(answer, {"X-Pipeline": name})

    def describe_pipeline(self, name: str) -> dict:
        pipeline = self._pipeline(name)
        tasks = {m.name: m.task.value for m in self.config.models}
        return {"name": pipeline.name, "description": pipeline.description,
                "output_fields": output_fields(self.config.pipelines, tasks, name),
                "graph": pipeline.graph.model_dump(mode="json", exclude_none=True)}

    async def pipeline_status(self, name: str) -> dict:
        """A pipeline is ready when every model it calls can answer (for a pinned `model@3`: that version)."""
        self._pipeline(name)
        refs = sorted(models_used(self.config.pipelines, name))
        names = sorted({r.partition("@")[0] for r in refs})
        statuses = dict(zip(names, await asyncio.gather(*(self.model_status(n) for n in names)), strict=True))
        not_ready = []
        for ref in refs:
            model, _, pinned = ref.partition("@")
            status = statuses[model]
            if not (any(v["version"] == pinned and v["ready"] for v in status["versions"]) if pinned
                    else status["ready"]):
                not_ready.append(ref)
        return {"name": name, "ready": not not_ready,
                "reason": "models not ready: " + ", ".join(not_ready) if not_ready else ""}

    def list_pipelines(self) -> dict:
        return {"pipelines": [self.describe_pipeline(p.name) for p in self.config.pipelines]}

    async def _version_status(self, entry: VersionEntry, share: float) -> dict:
        try:
            info = await asyncio.wait_for(entry.backend.info(), READY_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - any failure to answer means "not ready"
            return {"version": entry.label, "ready": False, "traffic_share": share}
        return {**info, "version": entry.label, "ready": True, "traffic_share": share}

    async def model_status(self, name: str) -> dict:
        model = self._config_of(name)
        routes = self.routes[name]
        shares = routes.shares()
        versions = await asyncio.gather(*(self._version_status(e, shares[e.label])
                                          for e in routes.versions.values()))
        return {"name": model.name, "task": model.task.value, "runtime": model.runtime.value,
                "batching": {"max_batch_size": model.batching.max_batch_size},  # stream jobs size batches by it
                "ready": any(v["ready"] and v["traffic_share"] > 0 for v in versions),
                "versions": sorted(versions, key=lambda v: v["version"])}

    async def list_models(self) -> dict:
        models = await asyncio.gather(*(self.model_status(m.name) for m in self.config.models))
        return {"models": list(models)}

    async def ready(self) -> dict:
        listing = await self.list_models()
        not_ready = [m["name"] for m in listing["models"] if not m["ready"]]
        if not_ready:
            raise ModelNotReady("models not ready: " + ", ".join(not_ready), models=not_ready)
        return {"ready": True}

    # -- administration -----------------------------------------------------------------------------------
    def registry_model(self, name: str) -> ModelConfig:
        model = self._config_of(name)
        if model.source is not None:
            raise InvalidInput(f"model '{name}' is served from a folder, not the registry; register it and "
                               "drop 'source' to load versions at run time")
        if self.manager is None:
            raise InvalidInput("this gateway cannot load versions at run time")
        return model

    async def load(self, name: str, selector: str) -> dict:
        """Deploy a registry version next to those already serving. A canary takes no traffic until weighted,
        but a version of the configured split gets its configured weight back, and a version loaded while
        nothing else takes traffic takes all of it: a model is never left loaded but unable to answer."""
        model = self.registry_model(name)
        label, backend = await self.manager.load(model, selector)
        routes = self.routes[name]
        added = label not in routes.versions
        if added:
            routes.add(label, backend, weight=0.0)
        self._restore_traffic(name, label, added)
        self._publish_versions(name)
        return await self.model_status(name)

    def _restore_traffic(self, name: str, label: str, added: bool) -> None:
        routes = self.routes[name]
        configured = self.configured.get(name, {})
        weighted = {v for v, e in routes.versions.items() if e.weight > 0}
        # A configured version came back and only configured versions take traffic, with no split set by
        # hand since: the configured weights of those loaded. Else it waits for a weight, unless nothing
        # else takes traffic.
        if (label in configured and name not in self._split_by_hand and (added or not weighted)
                and weighted <= set(configured)):
            self._set_configured(name)
        elif not weighted:
            routes.set_weights({label: 1.0})

    def _set_configured(self, name: str) -> None:
        routes = self.routes[name]
        routes.set_weights({v: w for v, w in self.configured[name].items() if v in routes.versions})

    async def load_configured(self, name: str) -> dict:
        """Load back every version of the configured split that is not loaded, with the configured traffic
        (OIP load without a version: the model as configured, as Triton loads a model per its version policy)."""
        self.registry_model(name)
        configured = self.configured.get(name, {})
        for label in [v for v in configured if v not in self.routes[name].versions]:
            await self.load(name, label)
        weighted = {v for v, e in self.routes[name].versions.items() if e.weight > 0}
        if configured and weighted <= set(configured):
            self._split_by_hand.discard(name)
            self._set_configured(name)
        return await self.model_status(name)

    async def loaded_label(self, name: str, selector: str) -> str:
        """The loaded version a selector names: a loaded label as is, else a registry selector (`canary`,
        `stable`, `sha256:3fa1`) resolved to its iteration, so admin calls can say `canary` instead of
        looking the number up. Unknown or unloaded ones come back unchanged (routing then says "not loaded")."""
        if selector in self.routes[name].versions:
            return selector
        model = self._config_of(name)
        if model.source is not None or model.task is Task.identity:
            return selector
        from serve_app.app import open_registry  # the registry is optional for folder-only configs
        from serve_app.registry.errors import RegistryError

        try:
            version = await asyncio.to_thread(open_registry(self.config).resolve, f"{model.registry_name}@{selector}")
        except (RegistryError, InvalidInput, ModelNotFound):
            return selector
        return str(version.iteration)

    async def unload(self, name: str, label: str) -> dict:
        model = self.registry_model(name)
        label = await self.loaded_label(name, label)
        self.routes[name].remove(label)  # stop routing to it before it goes away
        if not self.routes[name].versions:
            self._split_by_hand.discard(name)  # nothing left to split: loading starts afresh
        self._publish_versions(name)
        await self.manager.unload(model, label)
        return await self.model_status(name)

    async def set_traffic(self, name: str, body: object) -> dict:
        self._config_of(name)
        if not isinstance(body, dict) or not body or not all(
                isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
                for k, v in body.items()):
            raise InvalidInput('traffic must be a JSON object of version: weight, e.g. {"3": 90, "4": 10}')
        weights = {await self.loaded_label(name, k): float(v) for k, v in body.items()}
        if len(weights) < len(body):
            raise InvalidInput("traffic names one version twice (a selector and its iteration?)")
        self.routes[name].set_weights(weights)
        self._split_by_hand.add(name)
        return await self.model_status(name)
