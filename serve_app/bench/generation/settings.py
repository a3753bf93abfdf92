"""What a generation bench run asks for (GenSettings), and the summarizer under test as a gateway config entry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class GenSettings:
    repeats: int = 3
    concurrency: int = 8
    requests_batched: int = 32  # per repeat at concurrency 8 (the first wave of 8 arrives at once)
    requests_single: int = 6  # per repeat at concurrency 1
    max_new_tokens: int = 64
    max_length: int = 256  # article tokens kept (the prompt adds ~40 template tokens)
    prefill_chunk: int | None = None  # the engine's default
    threads: int = 2
    vllm_dtype: str = "bfloat16"  # vLLM standalone's dtype: its fastest here (AMX); float32 on CPUs without bf16

    @classmethod
    def smoke(cls) -> GenSettings:
        return cls(repeats=1, concurrency=2, requests_batched=2, requests_single=1, max_new_tokens=4, max_length=32)


def generation_model(source: dict, settings: GenSettings, name: str = "sum") -> dict:
    """The summarizer under test, as a model entry of the gateway config (`source` is `source:` or `version:`)."""
    gen = {"max_new_tokens": settings.max_new_tokens, "max_new_tokens_limit": max(256, settings.max_new_tokens),
           "max_running": settings.concurrency, "prefill_chunk": settings.prefill_chunk}
    return {"name": name, "task": "summarization", **source, "max_length": settings.max_length, "generation": gen,
            "resources": {"num_cpus": 0.2, "num_gpus": 0, "threads": settings.threads}}


def gateway_config(sum_dir: Path, settings: GenSettings) -> dict:
    return {"models": [generation_model({"source": str(sum_dir)}, settings)]}
