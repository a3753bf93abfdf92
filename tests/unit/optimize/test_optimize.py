"""Optimization transforms on tiny random-weight models (real tokenizer), in-process: what each transform
promises (sparsity, head count, dtype, quantized layers), closeness to the original where the transform should
keep outputs, and that the saved variant reloads to exactly the model that was built."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from support.tiny_models import build_tiny_classifier, build_tiny_summarizer

from serve_app.optimize.build import build_variant, load_parent
from serve_app.optimize.edge import write_bundle
from serve_app.optimize.plan import PlanError, make_plan
from serve_app.optimize.prune import head_importance, prunable_linears, sparsity
from serve_app.runtime.classifier import OnnxClassifier, TextClassifier, load_classifier
from serve_app.runtime.structure import attention_layers, head_counts
from serve_app.runtime.summarizer import TextSummarizer
from serve_app.runtime.variant import read_variant

TEXTS = ["The central bank raised interest rates again.", "The striker scored twice in the cup final.",
         "A new phone with a folding screen went on sale.", "The minister resigned after the vote.",
         "The film won three awards at the festival.", "Shares fell as oil prices rose."] * 3


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    return build_tiny_classifier(tmp_path_factory.mktemp("parent") / "tiny", seed=3)


def build(parent, tmp_path, name="variant", task="classification", **plan_args):
    out = tmp_path / name
    out.mkdir()
    info = build_variant(parent, make_plan(task, **plan_args), task, out, calibration=TEXTS)
    return out, info


def probs(runtime) -> np.ndarray:
    return np.array([[r["probabilities"][k] for k in sorted(r["probabilities"])] for r in runtime.predict(TEXTS)])


def test_random_pruning_zeroes_the_fraction_and_saves_plain_weights(parent, tmp_path):
    out, info = build(parent, tmp_path, prune=["random:0.3"])
    state = load_file(out / "model.safetensors")
    assert not [k for k in state if k.endswith(("weight_orig", "weight_mask"))]  # re-parametrisation removed
    reloaded = load_parent(out, "classification")[0]
    assert sparsity(reloaded) == pytest.approx(0.3, abs=0.005) and info["sparsity"] == pytest.approx(0.3, abs=0.005)
    # Embeddings and the task head are left dense.
    assert float((state["bert.embeddings.word_embeddings.weight"] == 0).float().mean()) < 0.01
    assert float((state["classifier.weight"] == 0).float().mean()) == 0


def test_magnitude_pruning_layer_scope_hits_every_layer_and_global_cuts_the_smallest(parent, tmp_path):
    per_layer, _ = build(parent, tmp_path, "layer", prune=["magnitude:0.5:layer"])
    for _, m in prunable_linears(load_parent(per_layer, "classification")[0]):
        assert float((m.weight == 0).float().mean()) == pytest.approx(0.5, abs=0.01)
    glob, _ = build(parent, tmp_path, "global", prune=["magnitude:0.5"])
    original = dict(prunable_linears(load_parent(parent, "classification")[0]))
    pruned = dict(prunable_linears(load_parent(glob, "classification")[0]))
    zeroed = torch.cat([original[n].weight[pruned[n].weight == 0].abs() for n in pruned])
    kept = torch.cat([original[n].weight[pruned[n].weight != 0].abs() for n in pruned])
    assert zeroed.numel() / (zeroed.numel() + kept.numel()) == pytest.approx(0.5, abs=0.01)
    assert float(zeroed.max()) <= float(kept.min())  # global L1: every cut weight is smaller than every kept one


def test_head_pruning_removes_the_least_important_heads_physically(parent, tmp_path):
    original = load_parent(parent, "classification")[0]
    from transformers import AutoTokenizer

    enc = AutoTokenizer.from_pretrained(parent)(TEXTS, padding=True, return_tensors="pt")
    scores = head_importance(original, [enc])
    out, info = build(parent, tmp_path, prune=["heads:0.5"])
    spec = read_variant(out)
    assert info["heads_removed"] == 2 and head_counts(load_parent(out, "classification")[0]) == [1, 1]
    # One head goes per layer (at least one must stay), and it is that layer's least important one.
    assert spec.pruned_heads == {li: [int(scores[li].argmin())] for li in range(2)}
    state = load_file(out / "model.safetensors")
    assert state["bert.encoder.layer.0.attention.self.query.weight"].shape == (16, 32)  # 2 heads of 16 -> 1
    # Removing a head computes exactly what masking it computes: the pruned model is the masked model.
    size = attention_layers(original)[0].self.attention_head_size
    hooks = []
    for li, heads in spec.pruned_heads.items():
        def mask(module, args, h=heads[0]):
            x = args[0].clone()
            x[..., h * size:(h + 1) * size] = 0
            return (x,)
        hooks.append(attention_layers(original)[li].output.dense.register_forward_pre_hook(mask))
    with torch.inference_mode():
        masked = original(**enc).logits
    for h in hooks:
        h.remove()
    served = TextClassifier(out)
    with torch.inference_mode():
        assert torch.allclose(served.model(**enc).logits, masked, atol=1e-5)


def test_torch_int8_is_quantized_at_load_and_stays_close(parent, tmp_path):
    out, _ = build(parent, tmp_path, quantize="int8")
    served = TextClassifier(out)
    quantized = [m for m in served.model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(quantized) == len(prunable_linears(load_parent(parent, "classification")[0])) + 2  # + pooler, head
    assert np.abs(probs(served) - probs(TextClassifier(parent))).max() < 0.02


def test_bf16_variant_loads_in_bf16(parent, tmp_path):
    out, info = build(parent, tmp_path, quantize="bf16")
    served = TextClassifier(out)
    assert served.model.classifier.weight.dtype == torch.bfloat16
    assert info["size_mb"] < 0.55 * (parent / "model.safetensors").stat().st_size / 1e6
    assert np.abs(probs(served) - probs(TextClassifier(parent))).max() < 0.02


@pytest.mark.parametrize(("quantize", "tolerance"), [(None, 1e-5), ("int8", 0.02), ("int8-static", 0.05),
                                                     ("int4", 0.02)])
def test_onnx_variants_match_torch(parent, tmp_path, quantize, tolerance):
    out, info = build(parent, tmp_path, runtime="onnx", quantize=quantize)
    served = load_classifier(out)
    assert isinstance(served, OnnxClassifier) and served.placement.device == "cpu"
    assert read_variant(out).quantization == {"int8": "int8", "int8-static": "int8", "int4": "int4",
                                              None: None}[quantize]
    assert not list(out.glob("*.safetensors"))  # the ONNX file is the model
    assert np.abs(probs(served) - probs(TextClassifier(parent))).max() < tolerance
    assert [r["label"] for r in served.predict(TEXTS)] == [r["label"] for r in TextClassifier(parent).predict(TEXTS)]
    if quantize == "int8":
        import onnx

        ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
        assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "QAttention"}
    if quantize == "int4":
        import onnx

        assert "MatMulNBits" in {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    if quantize == "int8-static":  # activations quantized with calibrated (constant) scales, not on the fly
        import onnx

        ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
        assert "QLinearMatMul" in ops and not ops & {"DynamicQuantizeLinear", "MatMulInteger"}


def test_a_sequence_length_variant_reads_at_most_its_own_limit(parent, tmp_path):
    out, _ = build(parent, tmp_path, runtime="onnx", quantize="int8", max_length=8)
    spec = read_variant(out)
    assert spec.max_length == 8 and spec.transforms == ["truncate-8", "onnx", "quantize-int8"]
    served = load_classifier(out, max_length=128)  # the config asks for more: the variant's limit holds
    served.max_length = 64  # so does a benchmark that sets its own length
    long_text = "markets " * 40
    [result] = served.predict([long_text])
    assert served.max_length == 8 and result["truncated"] and result["input_tokens"] == 8
    assert TextClassifier(parent, max_length=128).predict([long_text])[0]["input_tokens"] > 8


def test_transforms_compose_heads_then_onnx_int8(parent, tmp_path):
    pruned, _ = build(parent, tmp_path, "pruned", prune=["heads:0.5"])
    out, info = build(parent, tmp_path, "composed", prune=["heads:0.5"], runtime="onnx", quantize="int8")
    assert read_variant(out).transforms == ["prune-heads(0.5)", "onnx", "quantize-int8"]
    assert read_variant(out).pruned_heads == read_variant(pruned).pruned_heads
    assert np.abs(probs(load_classifier(out)) - probs(TextClassifier(pruned))).max() < 0.02


def test_a_variant_of_a_variant_records_heads_by_their_original_index(parent, tmp_path):
    first, _ = build(parent, tmp_path, "first", prune=["magnitude:0.2"])
    second, _ = build(first, tmp_path, "second", prune=["heads:0.5"])
    assert read_variant(second).transforms == ["prune-magnitude(0.2,global)", "prune-heads(0.5)"]
    assert TextClassifier(second).predict(TEXTS[:2])  # reloads with the recorded shapes


def test_summarizer_int8_and_bf16(tmp_path, smollm2_tokenizer_dir):
    parent = build_tiny_summarizer(tmp_path / "sum", smollm2_tokenizer_dir)
    for quantize in ("int8", "bf16"):
        out, _ = build(parent, tmp_path, quantize, task="summarization", quantize=quantize)
        runtime = TextSummarizer(out, max_length=64)
        if quantize == "bf16":
            assert runtime.model.lm_head.weight.dtype == torch.bfloat16
        else:
            assert any("quantized" in type(m).__module__ for m in runtime.model.modules())
        result = runtime.summarize(["Shares fell as oil prices rose."], [4], 1)[0]
        assert 1 <= result["generated_tokens"] <= 4


@pytest.mark.parametrize(("task", "args", "message"), [
    ("classification", {"quantize": "int4"}, "add --runtime onnx"),
    ("classification", {"quantize": "int8-static"}, "add --runtime onnx"),
    ("summarization", {"quantize": "int8-static"}, "classifiers only"),
    ("classification", {}, "nothing to do"),
    ("classification", {"prune": ["heads:1.5"]}, "between 0 and 1"),
    ("classification", {"prune": ["sparse:0.3"]}, "random:FRACTION"),
    ("classification", {"runtime": "onnx", "quantize": "bf16"}, "torch runtime option"),
    ("summarization", {"runtime": "onnx"}, "classifiers"),
    ("summarization", {"prune": ["heads:0.2"]}, "BERT-style"),
    ("classification", {"runtime": "vllm", "quantize": "bf16"}, "generation models"),
    ("summarization", {"runtime": "vllm", "quantize": "int8"}, "bf16, fp16, fp32"),
    ("summarization", {"runtime": "vllm", "quantize": "bf16", "prune": ["random:0.2"]}, "a dtype only"),
])
def test_impossible_plans_are_refused_with_the_fix(task, args, message):
    with pytest.raises(PlanError, match=message):
        make_plan(task, **args)


def test_an_onnx_variant_cannot_be_optimized_again(parent, tmp_path):
    out, _ = build(parent, tmp_path, runtime="onnx")
    with pytest.raises(PlanError, match="optimize its torch parent"):
        build(out, tmp_path, "again", quantize="int8")


def test_edge_bundle_runs_with_onnxruntime_and_tokenizers_only(parent, tmp_path):
    out, _ = build(parent, tmp_path, runtime="onnx", quantize="int8")
    bundle = write_bundle(out, tmp_path / "bundle")
    assert sorted(p.name for p in bundle.iterdir()) == ["README.txt", "labels.json", "model.onnx", "run.py",
                                                        "tokenizer.json"]
    # -I: isolated mode, so the runner cannot import the gateway from the working directory.
    run = subprocess.run([sys.executable, "-I", str(bundle / "run.py"), *TEXTS[:4]], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    import json

    got = [json.loads(line)["label"] for line in run.stdout.splitlines()]
    assert got == [r["label"] for r in load_classifier(out).predict(TEXTS[:4])]
