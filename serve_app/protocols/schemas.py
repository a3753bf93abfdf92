"""Request bodies of the simple JSON API; each task's own body extends `TextsRequest` (in `serve_app.tasks`).
Strict types: a number where a text belongs is an error, not a cast."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr


class TextsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = None
    texts: Annotated[list[StrictStr], Field(min_length=1)]
    # Selection (serve_app/dataplane/selection.py); headers X-Latency-Budget-Ms / X-Min-Accuracy do the same.
    latency_budget_ms: float | None = None
    min_accuracy: float | None = None
    # Priority class (dataplane/priority.py): high, normal, low or 1-3; the header X-Priority does the same.
    priority: StrictStr | StrictInt | None = None


class PipelineRequest(TextsRequest):
    """`{"texts": [...], "trace": true, "parameters": {...}}`: run a pipeline; `trace` adds each node's latency
    and version; `parameters` are what its switch nodes may test (`param:` conditions)."""

    trace: bool = False
    parameters: dict[str, str | int | float | bool] = {}
