"""OpenAI-compatible API for the models of every task that streams (summarizers), under /openai/v1
(`/v1/models` is the gateway's own).

    GET  /openai/v1/models                 every model of a task that streams, and each version as name@version
    GET  /openai/v1/models/{id}
    POST /openai/v1/chat/completions       messages -> the model's chat template
    POST /openai/v1/completions            prompt as is (no template)

Supported: `max_tokens` (`max_completion_tokens`), `temperature` (0 = greedy, also the default here: answers
are reproducible unless asked otherwise), `top_p`, `stop`, `seed` (sampling with a seed is reproducible), `n`
= 1, `stream`, `stream_options.include_usage`. Other OpenAI fields are accepted and ignored, as most servers
do. Errors use OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from serve_app.dataplane import DataPlane
from serve_app.dataplane.generation import MAX_SEED, GenerationStream, ended_badly
from serve_app.dataplane.priority import CURRENT, parse_priority
from serve_app.errors import GatewayError, InvalidInput, ModelNotFound
from serve_app.protocols.json_body import decode_json, describe_error
from serve_app.protocols.sse import SSE_HEADERS, frame, guarded
from serve_app.tasks import contract

PREFIX = "/openai/v1"

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "invalid_request_error", 429: "rate_limit_error"}
_FINISH = {"stop": "stop", "length": "length"}


def openai_error(err: GatewayError) -> dict:
    error_type = _ERROR_TYPES.get(err.http_status, "server_error" if err.http_status >= 500 else "api_error")
    return {"error": {"message": err.message, "type": error_type, "param": err.details.get("field"),
                      "code": err.kind}}


class _Request(BaseModel):
    # Unknown OpenAI fields (user, frequency_penalty, ...) are ignored; the ones we serve are type-checked.
    model_config = ConfigDict(extra="ignore")

    model: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    max_tokens: StrictInt | None = None
    max_completion_tokens: StrictInt | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: StrictInt | None = None
    stop: StrictStr | list[StrictStr] | None = None
    seed: Annotated[StrictInt, Field(ge=0, le=MAX_SEED)] | None = None
    stream: StrictBool | None = False
    stream_options: dict | None = None
    priority: StrictInt | StrictStr | None = None  # vLLM's extension; here a class (dataplane/priority.py)

    def params(self) -> dict:
        if self.n not in (None, 1):
            raise InvalidInput(f"n: only n=1 is supported, got {self.n}", field="n")
        limit = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        if limit is not None and limit < 1:
            raise InvalidInput(f"max_tokens: must be at least 1, got {limit}", field="max_tokens")
        out = {"max_new_tokens": limit, "seed": self.seed,
               "stop": [self.stop] if isinstance(self.stop, str) else list(self.stop or [])}
        if self.temperature is not None:
            out["temperature"] = self.temperature
        if self.top_p is not None:
            out["top_p"] = self.top_p
        return out

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: StrictStr | list[dict]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise InvalidInput("messages: only text content parts are supported", field="messages")
            parts.append(part["text"])
        return "".join(parts)


class ChatRequest(_Request):
    messages: Annotated[list[_Message], Field(min_length=1)]


class CompletionRequest(_Request):
    # An empty prompt leaves the engine nothing to continue from (vLLM refuses it too).
    prompt: Annotated[StrictStr, Field(min_length=1)] | Annotated[
        list[Annotated[StrictStr, Field(min_length=1)]], Field(min_length=1, max_length=1)]

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


def _parse(schema, body: object):
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object")
    try:
        return schema.model_validate(body)
    except ValidationError as err:
        where, message = describe_error(err.errors()[0], schema)
        raise InvalidInput(message, field=where) from None


def _usage(done: dict) -> dict:
    return {"prompt_tokens": done["prompt_tokens"], "completion_tokens": done["completion_tokens"],
            "total_tokens": done["prompt_tokens"] + done["completion_tokens"]}


def model_ids(dp: DataPlane) -> list[str]:
    """The models OpenAI clients can name: every streaming model, and each loaded version of it pinned."""
    ids = []
    for m in dp.config.models:
        if contract(m.task).streams:
            ids += [m.name, *(f"{m.name}@{label}" for label in dp.table.loaded(m.name))]
    return ids


def model_card(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "gateway"}


def add_openai_routes(app: FastAPI, get_dataplane: Callable[[], DataPlane],
                      deadline_of: Callable[[Request, DataPlane], float]) -> None:
    @app.get(f"{PREFIX}/models")
    async def list_models():
        return {"object": "list", "data": [model_card(i) for i in model_ids(get_dataplane())]}

    @app.get(PREFIX + "/models/{model_id:path}")
    async def get_model(model_id: str):
        if model_id not in model_ids(get_dataplane()):
            raise ModelNotFound(f"model '{model_id}' does not exist; see GET {PREFIX}/models", field="model")
        return model_card(model_id)

    async def _json(request: Request) -> object:
        return decode_json(await request.body(), get_dataplane().limits)

    async def open_stream(request: Request, req: _Request, payload: dict) -> tuple[DataPlane, GenerationStream]:
        dp = get_dataplane()
        # The same text limit as every other route, before the replica tokenizes anything.
        chars = len(payload["prompt"]) if "prompt" in payload else sum(len(m["content"]) for m in payload["messages"])
        if chars > dp.limits.max_text_chars:
            field = "prompt" if "prompt" in payload else "messages"
            raise InvalidInput(f"{field}: {chars} characters; the limit is {dp.limits.max_text_chars}", field=field)
        deadline = deadline_of(request, dp)
        if req.priority is not None:
            CURRENT.set(parse_priority(req.priority))
        return dp, await dp.deadlines.within(deadline, dp.inference.open_stream(req.model, {**payload, "params": {
            **req.params(), **payload.get("params", {})}}, deadline))

    @app.post(f"{PREFIX}/chat/completions")
    async def chat(request: Request):
        req = _parse(ChatRequest, await _json(request))
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                    for m in req.messages]
        _, stream = await open_stream(request, req, {"kind": "chat", "messages": messages})
        return await respond(req, stream, "chat")

    @app.post(f"{PREFIX}/completions")
    async def completions(request: Request):
        req = _parse(CompletionRequest, await _json(request))
        _, stream = await open_stream(request, req, {"kind": "completion", "prompt": req.text(),
                                                     "params": {"strip": False}})
        return await respond(req, stream, "completion")


async def respond(req: _Request, stream: GenerationStream, kind: str):
    """The whole completion as one JSON object, or (`stream: true`) as OpenAI's server-sent chunks."""
    ident = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex
    headers = {"X-Model-Name": stream.model, "X-Model-Version": stream.version}
    base = {"id": ident, "created": int(time.time()), "model": req.model, "system_fingerprint": stream.version}
    if req.stream:
        return _stream_response(req, stream, kind, base, headers)
    done = await stream.collect()
    if (err := ended_badly(done, stream.model)) is not None:
        raise err
    finish = _FINISH[done["finish_reason"]]
    choice = ({"index": 0, "message": {"role": "assistant", "content": done["text"]}} if kind == "chat"
              else {"index": 0, "text": done["text"]})
    body = {**base, "object": "chat.completion" if kind == "chat" else "text_completion",
            "choices": [{**choice, "finish_reason": finish, "logprobs": None}], "usage": _usage(done)}
    return JSONResponse(body, headers=headers)


def _stream_response(req: _Request, stream: GenerationStream, kind: str, base: dict,
                     headers: dict) -> StreamingResponse:
    chunk_object = "chat.completion.chunk" if kind == "chat" else "text_completion"

    def chunk(text: str | None, finish: str | None = None, first: bool = False) -> bytes:
        if kind == "chat":
            delta = {"role": "assistant", "content": ""} if first else ({"content": text} if text else {})
            choice = {"index": 0, "delta": delta}
        else:
            choice = {"index": 0, "text": text or ""}
        return frame({**base, "object": chunk_object,
                      "choices": [{**choice, "finish_reason": finish, "logprobs": None}]})

    async def events():
        if kind == "chat":
            yield chunk(None, first=True)
        async for event in guarded(stream):
            if event["type"] == "token":
                yield chunk(event["text"])
            elif event["type"] == "done":
                yield chunk(None, _FINISH[event["finish_reason"]])
                if req.include_usage:
                    yield frame({**base, "object": chunk_object, "choices": [], "usage": _usage(event)})
            else:
                yield frame(openai_error(event["error"]))
                return
        yield frame("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
