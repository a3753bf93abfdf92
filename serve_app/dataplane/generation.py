"""Token streams from the models of tasks that stream (their contract's `streams`), shared by every protocol
that streams (SSE, OpenAI, OIP generate, Triton's gRPC stream).

A generation request crosses to the replica as a plain dict:
    {"kind": <the task's stream_kind, e.g. "summary">, "text": ...} | {"kind": "chat", "messages": [...]}
    | {"kind": "completion", "prompt": ...}
    + "params": {"max_new_tokens", "temperature", "top_p", "seed", "stop", "strip"} and "deadline_s"
A request without "kind" gets its model's task's `stream_kind` (one text, as the task's own route sends it).
The replica's `generate` yields, in order:
    {"type": "start", "version", "prompt_tokens", "input_tokens", "truncated"}  or  {"type": "error", ...}
    {"type": "token", "text": <delta>, "completion_tokens": <so far>}            (any number)
    {"type": "done", "text": <whole text>, "finish_reason", "prompt_tokens", "completion_tokens", ...}
finish_reason: "stop" (stop token or string), "length" (max_new_tokens), "deadline", "cancelled", "error".
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError

from serve_app.errors import DeadlineExceeded, GatewayError, InferenceFailed, InvalidInput

MAX_STOPS = 4
# Seeds go to numpy's and the engines' generators, which take unsigned 64-bit values at most.
MAX_SEED = 2**63 - 1


@dataclass
class SamplingParams:
    max_new_tokens: int
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    strip: bool = True  # strip the text's surrounding whitespace (summaries, chat), or keep it (completions)


def sampling_params(params: dict) -> SamplingParams:
    return SamplingParams(**{k: v for k, v in params.items() if k in SamplingParams.__dataclass_fields__})


class BadPrompt(ValueError):
    """A prompt the replica refuses before it reaches the engine (answered as invalid input)."""


class PromptTooLong(BadPrompt):
    """A chat or completion prompt that leaves no room for max_new_tokens (raised in the replica)."""


class GenerateParams(BaseModel):
    """Sampling parameters as the protocols pass them (OpenAI names are mapped onto these)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    max_new_tokens: StrictInt | None = None
    temperature: Annotated[StrictFloat | StrictInt, Field(ge=0, le=2)] = 0.0
    top_p: Annotated[StrictFloat | StrictInt, Field(gt=0, le=1)] = 1.0
    seed: Annotated[StrictInt, Field(ge=0, le=MAX_SEED)] | None = None
    stop: Annotated[list[Annotated[StrictStr, Field(min_length=1, max_length=64)]],
                    Field(max_length=MAX_STOPS)] = []
    strip: bool = True


def check_params(raw: dict, default_tokens: int, limit: int) -> dict:
    """Validated parameters with the model's default token count; InvalidInput names the first problem."""
    try:
        params = GenerateParams.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "parameters"
        raise InvalidInput(f"{where}: {first['msg']}", field=where) from None
    n = default_tokens if params.max_new_tokens is None else params.max_new_tokens
    if not 1 <= n <= limit:
        raise InvalidInput(f"max_new_tokens: must be between 1 and {limit}, got {n}", field="max_new_tokens")
    return {**params.model_dump(), "max_new_tokens": n, "temperature": float(params.temperature),
            "top_p": float(params.top_p)}


def ended_badly(done: dict, model: str) -> GatewayError | None:
    """The error a `done` event stands for, if it did not end normally."""
    reason = done["finish_reason"]
    if reason == "deadline":
        return DeadlineExceeded("the stream did not finish within its deadline")
    if reason in ("error", "cancelled"):
        return InferenceFailed(f"model '{model}' failed while generating; see the server log")
    return None


@dataclass
class GenerationStream:
    """An open stream whose prompt the replica accepted: `start` is its first event, `events` the rest."""

    model: str
    version: str
    start: dict
    events: AsyncIterator[dict]

    async def collect(self) -> dict:
        """Drain the stream; return its `done` event."""
        done = {}
        async for event in self.events:
            done = event
        if done.get("type") != "done":
            raise RuntimeError("the stream ended without a done event")
        return done

    async def aclose(self) -> None:
        """Stop reading: the replica's generator is cancelled and the stream's admission ticket given back."""
        close = getattr(self.events, "aclose", None)
        if close is not None:
            await close()
