"""Request bodies of the simple JSON API. Strict types: a number where a text belongs is an error, not a cast."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = None
    texts: Annotated[list[StrictStr], Field(min_length=1)]


class ClassifyRequest(_Request):
    """`{"texts": [...], "model": "classifier"}`: one label and probability table per text."""


class PipelineRequest(_Request):
    """`{"texts": [...], "trace": true}`: run a pipeline; `trace` adds each node's latency and version."""

    trace: bool = False


class SummarizeRequest(_Request):
    """`{"texts": [...], "max_new_tokens": 64}`: one summary per text; `"stream": true` (one text) streams it
    as server-sent events."""

    max_new_tokens: StrictInt | None = None
    stream: bool = False
