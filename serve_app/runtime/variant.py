"""How a checkpoint folder asks to be run: `runtime.json`, written by `gateway optimize`.

A plain Hugging Face folder has no such file and runs as is (torch, fp32 on CPU, fp16 on GPU). An optimized
variant records what the loader must do to run it the way it was evaluated:

    {"runtime": "onnx", "onnx_file": "model.onnx", "transforms": ["onnx", "quantize-int8"]}
    {"runtime": "torch", "quantization": "dynamic-int8", "transforms": ["quantize-int8"]}
    {"runtime": "torch", "dtype": "bfloat16", "pruned_heads": {"0": [3, 7]}, "transforms": [...]}
    {"runtime": "onnx", "max_length": 64, "transforms": ["truncate-64", "onnx", "quantize-int8"]}
    {"runtime": "llama.cpp", "gguf_file": "model.gguf", "transforms": ["gguf-q8_0"]}
    {"runtime": "vllm", "dtype": "bfloat16", "transforms": ["vllm-bf16"]}

torch dynamic int8 cannot be stored as safetensors (its packed weights are not tensors), so that variant keeps
fp32 weights and is quantized when loaded; everything else is stored in its final form.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

RUNTIME_FILE = "runtime.json"


class VariantSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runtime: str = Field("torch", pattern="^(torch|onnx|llama.cpp|vllm)$")
    onnx_file: str | None = None
    gguf_file: str | None = None  # llama.cpp: the GGUF file in the folder
    # torch: the dtype the weights are stored in (None: fp32, or fp16 on a GPU); vllm: the dtype it computes in.
    dtype: str | None = Field(None, pattern="^(float32|float16|bfloat16)$")
    quantization: str | None = Field(None, pattern="^(dynamic-int8|int8|int4)$")
    # layer index -> heads removed; the loader slices the same heads away before loading the weights.
    pruned_heads: dict[int, list[int]] = {}
    # A sequence-length variant: inputs are cut to this many tokens (the gate measured it so).
    max_length: int | None = Field(None, ge=8, le=32_768)
    transforms: list[str] = []


def read_variant(folder: Path) -> VariantSpec:
    path = Path(folder) / RUNTIME_FILE
    if not path.is_file():
        return VariantSpec()
    return VariantSpec.model_validate(json.loads(path.read_text()))


def write_variant(folder: Path, spec: VariantSpec) -> None:
    (Path(folder) / RUNTIME_FILE).write_text(json.dumps(spec.model_dump(mode="json", exclude_defaults=True),
                                                        indent=2) + "\n")
