"""What a task is, in one place: its request, parameters, outputs, runtime loader and deployment class.

The dataplane, OIP metadata, pipeline validation, the simple JSON routes and the Ray shell all read a task's
contract instead of naming tasks themselves, so adding a task is one module in this package (see identity.py).
A task that generates text (`streams=True`) also gets token streams on every protocol (SSE on its route, OIP
generate, Triton's gRPC stream, the OpenAI API) and a config `generation` block, from its contract alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class Output:
    """One field of a task's answer (a record per text): its OIP tensor, and what pipelines may read it as."""

    name: str
    datatype: str  # OIP datatype: BYTES, FP32, INT64, BOOL
    shape: tuple[int, ...] = (-1,)  # -1: one element per text
    field_type: str | None = None  # "label", "number", "text", "probabilities"; None: not a pipeline input


@dataclass(frozen=True)
class WindowJoin:
    """How a pipeline's serial split joins one document's window answers into one record: `join(records)` gives
    the joined fields from each window's `field`. A `text` join can feed a `reduce` step (map-reduce); `noun`
    names what is joined in validation errors ("summaries")."""

    field: str
    noun: str
    join: Callable[[list[dict]], dict]
    text: bool = False


def concatenated(field: str, noun: str) -> WindowJoin:
    """Generated texts joined in window order, one space between them."""
    return WindowJoin(field, noun, lambda records: {field: " ".join(r[field] for r in records)}, text=True)


def no_params(model: Any, requested: dict) -> dict:
    """Tasks without parameters ignore what a request sends."""
    return {}


@dataclass(frozen=True)
class TaskContract:
    name: str
    outputs: tuple[Output, ...]
    deployment: str  # "module:Class" of its Ray Serve deployment, imported by the Ray shell only
    request: type[BaseModel]  # the simple JSON API's body for `route`
    route: str | None = None  # POST path in the simple JSON API (None: OIP and pipelines only)
    # (model config, requested parameters) -> checked parameters with the config's defaults (InvalidInput).
    params: Callable[[Any, dict], dict] = no_params
    param_names: tuple[str, ...] = ()  # request parameters forwarded to the model (simple JSON and OIP)
    runtime: str | None = None  # "module:function" (path, model spec dict) -> runtime; None: no weights
    # Generates text as a token stream (its deployment has `generate`; serve_app/dataplane/generation.py); its
    # models take a config `generation` block. `stream_kind` is the generation request one text becomes.
    streams: bool = False
    stream_kind: str | None = None
    # The ingress merges concurrent requests without parameters into one model call unless the config says not
    # to (`batching.coalesce`): worth it where a hop through Ray costs about as much as the model's forward pass.
    coalesces: bool = False
    runtimes: tuple[str, ...] = ("auto", "torch")  # `runtime` values a model of this task may ask for
    window_join: WindowJoin | None = None  # None: a serial split cannot join this task's answers
    quality_metric: str | None = None  # the evaluation's quality key that gates optimized variants

    def __post_init__(self):
        if self.streams and (self.stream_kind is None or self.text_output is None):
            raise ValueError(f"task '{self.name}' streams: give it a stream_kind and a text output")

    @property
    def has_files(self) -> bool:
        return self.runtime is not None

    @property
    def text_output(self) -> str | None:
        """The output holding the generated text (what a stream's tokens add up to)."""
        return next((o.name for o in self.outputs if o.field_type == "text"), None)

    def pipeline_fields(self) -> dict[str, str]:
        return {o.name: o.field_type for o in self.outputs if o.field_type}

    def oip_outputs(self) -> list[dict]:
        return [{"name": o.name, "datatype": o.datatype, "shape": list(o.shape)} for o in self.outputs]

    def request_params(self, request: BaseModel) -> dict:
        """The parameters a simple JSON request carries (its fields named in `param_names`, when set)."""
        return {k: getattr(request, k) for k in self.param_names if getattr(request, k, None) is not None}

    def stream_request(self, text: str, params: dict) -> dict:
        """The generation request (serve_app/dataplane/generation.py) for one text of this task."""
        return {"kind": self.stream_kind, "text": text, "params": params}

    @staticmethod
    def stream_result(start: dict, done: dict) -> dict:
        """A finished stream's record fields beside the text (the same as an unstreamed answer's)."""
        return {"truncated": start["truncated"], "input_tokens": start["input_tokens"],
                "generated_tokens": done["completion_tokens"], "finish_reason": done["finish_reason"]}

    def load_runtime(self, path: Path, spec: dict):
        """Import and call the runtime loader (inside a model replica: this is where torch comes in)."""
        module, _, name = self.runtime.partition(":")
        return getattr(import_module(module), name)(path, spec)
