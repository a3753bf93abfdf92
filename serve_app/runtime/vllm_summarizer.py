"""Summarizer runtime on vLLM: a Hugging Face folder (config.json, safetensors, tokenizer) served by `VllmEngine`.
Prompts are made here by the folder's tokenizer (serve_app/runtime/prompts.py), as for every engine, so vLLM
sees the same token ids the other engines see."""

from __future__ import annotations

import json
from pathlib import Path

from serve_app.runtime.placement import check_model_folder, pick_placement
from serve_app.runtime.prompts import PromptedModel
from serve_app.runtime.variant import read_variant


class VllmSummarizer(PromptedModel):
    """`context_per_sequence` is vLLM's `max_model_len`: the longest prompt plus `max_new_tokens` it takes."""

    def __init__(self, path: Path, max_length: int | None = None, threads: int = 2,
                 context_per_sequence: int = 2048, dtype: str = "auto", compiled: bool = True):
        from transformers import AutoConfig, AutoTokenizer

        check_model_folder(path)
        self.path = Path(path)
        self.placement = pick_placement()
        self.variant = read_variant(path)
        self.threads = threads
        self.compiled = compiled
        # The variant's dtype (runtime.json), else fp16 on a GPU as the other runtimes (placement.py), fp32 on CPU.
        if dtype == "auto":
            dtype = self.variant.dtype or ("float16" if self.placement.device == "cuda" else "float32")
        self.dtype = dtype
        cfg = AutoConfig.from_pretrained(path)
        model_limit = getattr(cfg, "max_position_embeddings", None) or 2048
        self.context_per_sequence = min(context_per_sequence, model_limit)
        gen_file = self.path / "generation_config.json"
        eos = json.loads(gen_file.read_text()).get("eos_token_id") if gen_file.is_file() else None
        eos = eos if isinstance(eos, list) else [eos]
        self._init_prompts(AutoTokenizer.from_pretrained(path), max_length, self.context_per_sequence,
                           {i for i in eos if i is not None})

    def start_engine(self, max_running: int, prefill_chunk: int | None = None, on_change=None,  # noqa: ARG002
                     reuse_prompts: bool = True):
        """vLLM schedules prefill itself (chunked prefill within its token budget), so `prefill_chunk` is not
        passed; `reuse_prompts` is its automatic prefix caching."""
        from serve_app.runtime.engines.vllm_engine import VllmEngine

        return VllmEngine(self.path, self.decode, self.stop_ids, max_running, self.context_per_sequence,
                          dtype=self.dtype, gpu=self.placement.device == "cuda", threads=self.threads,
                          on_change=on_change, reuse_prompts=reuse_prompts, compiled=self.compiled)
