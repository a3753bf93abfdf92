"""Summarization: one summary per text, from a seq2seq or a decoder-only (continuous batching) model; streams."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import StrictInt

from serve_app.errors import InvalidInput
from serve_app.protocols.schemas import TextsRequest
from serve_app.tasks.contract import Output, TaskContract, concatenated


class SummarizeRequest(TextsRequest):
    """`{"texts": [...], "max_new_tokens": 64}`: one summary per text; `"stream": true` (one text) streams it
    as server-sent events."""

    max_new_tokens: StrictInt | None = None
    stream: bool = False


def check_params(model: Any, requested: dict) -> dict:
    """`max_new_tokens`, defaulting to the model's `generation.max_new_tokens`, within its limit."""
    gen = model.generation_settings
    n = requested.get("max_new_tokens")
    n = gen.max_new_tokens if n is None else n
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= gen.max_new_tokens_limit:
        raise InvalidInput(f"max_new_tokens: must be between 1 and {gen.max_new_tokens_limit}, got {n}",
                           field="max_new_tokens")
    return {"max_new_tokens": n}


def load(path: Path, spec: dict):
    """The runtime of the engine the config names, or that `auto` picks from the version's files."""
    from serve_app.runtime.engines import LLAMA_CPP, VLLM, engine_for

    gen = spec.get("generation") or {}
    engine = engine_for(path, spec.get("runtime", "auto"))
    threads = (spec.get("resources") or {}).get("threads") or 2
    if engine == LLAMA_CPP:
        from serve_app.runtime.gguf_summarizer import GgufSummarizer

        return GgufSummarizer(path, spec.get("max_length"), threads=threads)
    if engine == VLLM:
        from serve_app.runtime.vllm_summarizer import VllmSummarizer

        return VllmSummarizer(path, spec.get("max_length"), threads=threads, compiled=gen.get("compile", True))
    from serve_app.runtime.summarizer import TextSummarizer  # torch: inside the replica only

    return TextSummarizer(path, spec.get("max_length"), do_sample=gen.get("do_sample", False))


CONTRACT = TaskContract(
    name="summarization",
    outputs=(Output("summary", "BYTES", field_type="text"), Output("truncated", "BOOL"),
             Output("input_tokens", "INT64"), Output("generated_tokens", "INT64"), Output("finish_reason", "BYTES")),
    deployment="deployments.summarizer:SummarizerDeployment",
    request=SummarizeRequest,
    route="/v1/summarize",
    params=check_params,
    param_names=("max_new_tokens",),
    runtime="serve_app.tasks.summarization:load",
    streams=True,
    stream_kind="summary",  # the replica builds its summary prompt from the text
    runtimes=("auto", "torch", "llama.cpp", "vllm"),
    window_join=concatenated("summary", "summaries"),  # map-reduce: the joined summaries feed `reduce`
    quality_metric="rougeL_headline",
)
