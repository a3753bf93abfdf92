"""The transport-agnostic core: validate a request, pick the model, call it, shape the answer.

HTTP (and later gRPC) adapters only decode bytes into a body, call the dataplane, and encode what it returns
or the `GatewayError` it raises. Models are reached through `ModelBackend`, so the dataplane runs the same
against Ray Serve handles in production and against in-process models in unit tests.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Protocol

from pydantic import ValidationError

from serve_app.config import GatewayConfig, Generation, ModelConfig, Task
from serve_app.errors import GatewayError, InferenceFailed, InvalidInput, ModelNotFound, ModelNotReady, PayloadTooLarge
from serve_app.schemas import ClassifyRequest, SummarizeRequest

READY_TIMEOUT_S = 2.0


class ModelBackend(Protocol):
    """What the dataplane needs from a served model."""

    async def infer(self, texts: list[str], params: dict) -> dict:
        """Return {"results": [...one per text...], "version": ..., "max_length": ...}."""

    async def info(self) -> dict:
        """Return {"version": ..., "content_hash": ..., "max_length": ..., ...}."""


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
    def __init__(self, config: GatewayConfig, backends: dict[str, ModelBackend]):
        missing = {m.name for m in config.models} - set(backends)
        if missing:
            raise ValueError(f"no backend for configured models: {sorted(missing)}")
        self.config = config
        self.backends = backends

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

    def _parse(self, schema, body: object):
        if not isinstance(body, dict):
            raise InvalidInput("request body must be a JSON object such as {\"texts\": [\"...\"]}")
        try:
            req = schema.model_validate(body)
        except ValidationError as err:
            problems = [_describe(e, schema) for e in err.errors()[:5]]
            raise InvalidInput("; ".join(p for _, p in problems), field=problems[0][0]) from None
        limits = self.config.server.limits
        if len(req.texts) > limits.max_texts:
            raise InvalidInput(f"texts: {len(req.texts)} texts in one request; the limit is {limits.max_texts}",
                               field="texts")
        for i, t in enumerate(req.texts):
            if not t.strip():
                raise InvalidInput(f"texts.{i}: text is empty", field=f"texts.{i}")
            if len(t) > limits.max_text_chars:
                raise InvalidInput(f"texts.{i}: text has {len(t)} characters; the limit is "
                                   f"{limits.max_text_chars}", field=f"texts.{i}")
        return req

    def _model(self, name: str | None, task: Task) -> ModelConfig:
        model = self.config.model(name) if name else self.config.default_model(task)
        if model is None:
            known = ", ".join(m.name for m in self.config.models)
            raise ModelNotFound(f"model '{name}' is not served; known models: {known}" if name
                                else f"no {task.value} model is configured")
        if model.task is not task:
            raise InvalidInput(f"model '{model.name}' does {model.task.value}, not {task.value}", field="model")
        return model

    # -- operations ---------------------------------------------------------------------------------------
    async def classify(self, body: object) -> Answer:
        req = self._parse(ClassifyRequest, body)
        model = self._model(req.model, Task.classification)
        return await self._infer(model, req.texts, {})

    async def summarize(self, body: object) -> Answer:
        req = self._parse(SummarizeRequest, body)
        model = self._model(req.model, Task.summarization)
        gen = model.generation or Generation()
        limit = gen.max_new_tokens_limit
        n = req.max_new_tokens if req.max_new_tokens is not None else gen.max_new_tokens
        if not 1 <= n <= limit:
            raise InvalidInput(f"max_new_tokens: must be between 1 and {limit}, got {n}", field="max_new_tokens")
        return await self._infer(model, req.texts, {"max_new_tokens": n})

    async def _infer(self, model: ModelConfig, texts: list[str], params: dict) -> Answer:
        try:
            out = await self.backends[model.name].infer(texts, params)
        except GatewayError:
            raise
        except Exception:  # noqa: BLE001 - the cause is logged by the replica; clients get a generic message
            raise InferenceFailed(f"model '{model.name}' failed to answer; see the server log") from None
        body = {"model": model.name, **out}
        return Answer(body, {"X-Model-Name": model.name, "X-Model-Version": str(out.get("version", ""))})

    async def model_status(self, name: str) -> dict:
        model = self.config.model(name)
        if model is None:
            raise ModelNotFound(f"model '{name}' is not served; known models: "
                                + ", ".join(m.name for m in self.config.models))
        entry = {"name": model.name, "task": model.task.value, "runtime": model.runtime.value}
        try:
            info = await asyncio.wait_for(self.backends[name].info(), READY_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - any failure to answer means "not ready"
            return {**entry, "ready": False}
        return {**entry, "ready": True, **info}

    async def list_models(self) -> dict:
        models = await asyncio.gather(*(self.model_status(m.name) for m in self.config.models))
        return {"models": list(models)}

    async def ready(self) -> dict:
        listing = await self.list_models()
        not_ready = [m["name"] for m in listing["models"] if not m["ready"]]
        if not_ready:
            raise ModelNotReady("models not ready: " + ", ".join(not_ready), models=not_ready)
        return {"ready": True}
