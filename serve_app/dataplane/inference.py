"""Inference: check a request's texts, pick the version, admit and call it, or run a pipeline over the models.

Every protocol ends here with an `InferenceRequest`; models are reached through `ModelBackend`, so this runs
the same against Ray Serve handles in production and in-process models in unit tests.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from functools import partial

from serve_app.config import ModelConfig
from serve_app.dataplane.admission import Ticket
from serve_app.dataplane.cache import request_key
from serve_app.dataplane.deadlines import seconds_left
from serve_app.dataplane.generation import GenerationStream, check_params
from serve_app.dataplane.payloads import InferenceRequest, InferenceResponse
from serve_app.dataplane.priority import CLASSES, CURRENT
from serve_app.dataplane.routing import VersionEntry
from serve_app.dataplane.selection import Choice, Requirement, choose, parse_requirement
from serve_app.dataplane.streams import Outcome, WatchedEvents
from serve_app.dataplane.table import ModelTable
from serve_app.errors import GatewayError, InferenceFailed, InvalidInput, Overloaded
from serve_app.pipelines.engine import run_pipeline
from serve_app.tasks import contract
from serve_app.tracing import span


class Inference:
    def __init__(self, table: ModelTable):
        self.table = table
        self.limits = table.config.server.limits
        self.metrics = table.metrics

    @asynccontextmanager
    async def observed(self, labels: dict[str, str]):
        """Time a request and count its error kind; `labels` is filled in as the target becomes known."""
        started = time.perf_counter()
        with span("gateway.request") as current:
            try:
                yield
            except Exception as err:
                self.count_error(labels, err)
                self.count_priority(labels, "shed" if isinstance(err, Overloaded) else "failed")
                raise
            finally:
                current.set_attributes({f"gateway.{k}": v for k, v in labels.items() if v}
                                    | {"gateway.priority": CLASSES[CURRENT.get()]})
        self.metrics.observe("gateway_request_duration_seconds", labels, time.perf_counter() - started)
        self.count_priority(labels, "answered")

    def count_priority(self, labels: dict[str, str], outcome: str) -> None:
        """Per class, what became of requests (dataplane/priority.py): under overload the low class is shed."""
        self.metrics.inc("gateway_priority_requests", {"model": labels.get("model") or labels.get("pipeline", ""),
                                                       "priority": CLASSES[CURRENT.get()], "outcome": outcome})

    def count_error(self, labels: dict[str, str], err: Exception) -> None:
        kind = err.kind if isinstance(err, GatewayError) else "internal"
        self.metrics.inc("gateway_errors", {**labels, "kind": kind})

    def check_texts(self, texts: list[str]) -> None:
        """The request limits every protocol shares."""
        limits = self.limits
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

    async def infer(self, req: InferenceRequest) -> InferenceResponse:
        """A model (by task route or by name) or a pipeline (by name), answered as one record per text."""
        by_name = req.task is None and not req.pipeline and self.table.is_model(req.target)
        labels = {"model": req.target if by_name else "", "pipeline": req.target if req.pipeline else ""}
        async with self.observed(labels):
            self.check_texts(req.texts)
            need = parse_requirement(req.needs)
            if req.pipeline:
                context = {"params": req.params, "headers": req.headers}
                records, trace = await self.run_graph(req.target, req.texts, req.fresh, context)
                return InferenceResponse(req.target, records, pipeline=True, trace=trace if req.trace else None)
            if req.task is None:
                model, pinned = self.table.model(req.target), req.version
            else:
                model, pinned = self.table.for_task(req.target, req.task)
            labels["model"] = model.name
            out = await self.call(model, pinned, req.texts, req.params, need=need, fresh=req.fresh)
        fields = {k: v for k, v in out.items() if k not in ("results", "version")}
        return InferenceResponse(model.name, out["results"], str(out.get("version", "")), fields=fields)

    def shed_early(self, requested: str | None, task: str | None, deadline_s: float | None = None) -> None:
        """Raise the `Overloaded` admission would give now a request for `requested` ("name" or "name@version";
        a task's default model when None) with `deadline_s` to live, before its body is parsed
        (protocols/early_shed.py): only where the version it would reach is already certain (pinned, or the only
        one taking traffic) and admission alone decides (no response cache, no variant selection). Counted as the
        full path counts a refusal."""
        name, _, pinned = (requested or "").partition("@")
        if task is None and not self.table.is_model(name):
            return
        try:
            model, pinned = self.table.for_task(requested, task) if task else (self.table.model(name), pinned or None)
        except GatewayError:
            return  # the full path names the problem
        if model.selection is not None or self.table.cache_for(model.name) is not None:
            return
        versions = self.table.routes[model.name].versions
        taking = [e for e in versions.values() if e.weight > 0]
        entry = versions.get(pinned) if pinned else taking[0] if len(taking) == 1 else None
        if entry is None:
            return
        labels = {"model": model.name, "pipeline": ""}
        try:
            self.table.admission.controller(model, entry.label).check(deadline_s)
        except Overloaded as err:
            self.count_error(labels, err)
            self.count_priority(labels, "shed")
            raise

    async def call(self, model: ModelConfig, pinned: str | None, texts: list[str], params: dict,
                   pipeline: str = "", need: Requirement | None = None, fresh: bool = False) -> dict:
        """Pick the version (pinned, selected for the request's needs, or by traffic split), answer from the
        response cache when it holds the answer, else call the version with parameters its task checked."""
        params = contract(model.task).params(model, params)
        started = time.perf_counter()
        entry, choice = self.pick(model, pinned, need)
        mirror = None if pinned else self.table.mirrors.start(model, entry.label, texts, params)
        if mirror is None:
            return await self._call(model, entry, choice, need, started, texts, params, pipeline, fresh)
        try:  # the mirror compares with this answer, and waits for nothing else of ours
            out = await self._call(model, entry, choice, need, started, texts, params, pipeline, fresh)
        except BaseException as err:
            mirror.set_exception(err if isinstance(err, Exception) else RuntimeError("cancelled"))
            raise
        mirror.set_result(out)
        return out

    async def _call(self, model: ModelConfig, entry: VersionEntry, choice: Choice | None, need: Requirement | None,
                    started: float, texts: list[str], params: dict, pipeline: str, fresh: bool) -> dict:
        """The picked version's answer, from the response cache when it holds it."""
        tag = partial(self.tagged, choice=choice, need=need, started=started)
        cache = self.table.cache_for(model.name, pipeline)
        if cache is None:
            return tag(await self.answer(model, entry, texts, params, pipeline))
        key = request_key(self.table.cache_space(model.name, entry), texts, params)
        hit = None if fresh else cache.get(key)
        self.metrics.inc("gateway_cache_requests", {"model": model.name, "version": entry.label, "pipeline": pipeline,
                                                    "result": "bypass" if fresh else "hit" if hit else "miss"})
        if hit is not None:
            return tag(hit, cache="hit")
        out = await self.answer(model, entry, texts, params, pipeline)
        cache.put(key, out)
        return tag(out, cache="bypass" if fresh else "miss")

    def pick(self, model: ModelConfig, pinned: str | None,
             need: Requirement | None) -> tuple[VersionEntry, Choice | None]:
        """The version to call; with a requirement and a `selection` config, the variant chosen for it."""
        routes = self.table.routes[model.name]
        if need is None or pinned is not None or model.selection is None:
            return routes.pick(pinned), None
        choice = choose(self.table.candidates(model.name), need, model.selection.on_unmet == "refuse")
        self.metrics.inc("gateway_variant_choices", {"model": model.name, "version": choice.label,
                                                     "reason": choice.reason})
        return routes.versions[choice.label], choice

    @staticmethod
    def tagged(out: dict, choice: Choice | None, cache: str | None = None, need: Requirement | None = None,
               started: float | None = None) -> dict:
        """The answer with what the response says about how it was made (cache, variant selection: whether the
        budget was met is measured here, from the choice to the answer, cache hits included)."""
        answered_s = None if started is None else time.perf_counter() - started
        extra = {"cache": cache} if cache else {}
        if choice is not None:
            extra["selection"] = choice.as_dict(need, answered_s)
        return {**out, **extra} if extra else out

    async def answer(self, model: ModelConfig, entry: VersionEntry, texts: list[str], params: dict,
                     pipeline: str) -> dict:
        """Admit and call one version; its latency feeds selection."""
        # Overloaded (429) when the expected wait is longer than the configured bound or the request's deadline.
        ticket = self.table.admission.controller(model, entry.label).admit(seconds_left())
        feed_key = f"{model.name}@{entry.label}"
        fed = self.table.feed.start(feed_key)
        ok = False
        attributes = {"gateway.model": model.name, "gateway.version": entry.label, "gateway.texts": len(texts),
                      "gateway.queue_ahead": ticket.position}
        try:
            with span("gateway.model_call", attributes=attributes):
                out = await entry.backend.infer(texts, params)
            ok = True
        except GatewayError:
            raise
        except Exception:  # noqa: BLE001 - the cause is logged by the replica; clients get a generic message
            raise InferenceFailed(f"model '{model.name}' failed to answer; see the server log") from None
        finally:
            ticket.done(ok)
            self.table.feed.finish(feed_key, fed, ok)
        self.metrics.inc("gateway_requests", {"model": model.name, "version": entry.label, "pipeline": pipeline})
        return out

    async def call_model(self, ref: str, texts: list[str], params: dict, pipeline: str = "",
                         fresh: bool = False) -> dict:
        """One model call for the pipeline engine: `ref` is a model name, optionally pinned (`name@3`)."""
        name, _, pinned = ref.partition("@")
        return await self.call(self.table.model(name), pinned or None, texts, params, pipeline, fresh=fresh)

    async def run_graph(self, name: str, texts: list[str], fresh: bool = False,
                        context: dict | None = None) -> tuple[list, list]:
        """`context`: the request's parameters and headers ({"params", "headers"}), for switch nodes."""
        pipelines = {p.name: p for p in self.table.config.pipelines}
        call = partial(self.call_model, pipeline=name, fresh=fresh)
        records, trace = await run_pipeline(pipelines, call, name, texts, context)
        for entry in trace:
            self.metrics.observe("gateway_pipeline_node_duration_seconds", {"pipeline": name, "node": entry["node"]},
                                 entry["latency_ms"] / 1000)
        return records, trace

    async def open_stream(self, requested: str | None, request: dict, deadline_s: float,
                          task: str | None = None) -> GenerationStream:
        """Start a generation on a streaming model (`name` or `name@version`; unnamed, `task`'s default model) and
        wait for the replica to accept the prompt: errors up to then are typed errors (an HTTP status), later ones
        arrive in the stream. `request` is the dict `serve_app.dataplane.generation` describes, with unchecked
        "params". Admitted like a unary call (429 under overload); the stream holds its ticket until it ends,
        and ends at the deadline."""
        labels = {"model": "", "pipeline": ""}
        started = time.perf_counter()
        try:
            model, pinned = self.table.for_stream(requested, task)
            labels["model"] = model.name
            gen = model.generation_settings
            request = {"kind": contract(model.task).stream_kind, **request, "deadline_s": deadline_s,
                       "params": check_params(request.get("params") or {}, gen.max_new_tokens,
                                              gen.max_new_tokens_limit)}
            entry = self.table.routes[model.name].pick(pinned)
            if not hasattr(entry.backend, "stream"):
                raise InvalidInput(f"model '{model.name}' cannot stream", field="stream")
            left = seconds_left()
            ticket = self.table.admission.controller(model, entry.label).admit(left)
            expires = time.monotonic() + (deadline_s if left is None else left)
            events = entry.backend.stream(request)
            try:
                start = await self._first_event(model.name, events)
            except BaseException:  # refused, failed, or cancelled at the deadline: the slot is free again
                ticket.done(False)
                raise
        except GatewayError as err:
            self.count_error(labels, err)
            raise
        self.metrics.inc("gateway_requests", {"model": model.name, "version": entry.label, "pipeline": ""})
        ended = partial(self._stream_ended, labels, ticket, started)
        return GenerationStream(model.name, str(start.get("version", entry.label)), start,
                                WatchedEvents(events, model.name, expires, ended))

    @staticmethod
    async def _first_event(model: str, events) -> dict:
        """The stream's start event; a refused prompt is InvalidInput, a failure InferenceFailed."""
        try:
            start = await anext(events)
        except GatewayError:
            raise
        except Exception:  # noqa: BLE001 - the cause is logged by the replica
            raise InferenceFailed(f"model '{model}' failed to answer; see the server log") from None
        if start["type"] == "error":
            await events.aclose()
            raise InvalidInput(start["message"])
        return start

    def _stream_ended(self, labels: dict[str, str], ticket: Ticket, started: float, outcome: Outcome) -> None:
        """A stream's end, as `observed` records a unary call's: its duration, or its error kind; a client that
        left is neither. Its slot is free again either way."""
        ticket.done(outcome is None)
        if outcome is None:
            self.metrics.observe("gateway_request_duration_seconds", labels, time.perf_counter() - started)
        elif isinstance(outcome, Exception):
            self.count_error(labels, outcome)
