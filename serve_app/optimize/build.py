"""Turn a parent checkpoint folder and a `Plan` into a variant folder that the runtimes load as evaluated."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from serve_app.optimize import onnx as onnx_ops
from serve_app.optimize.distill import DistillSettings, distill, remove_layers, teacher_logits
from serve_app.optimize.plan import Plan, PlanError
from serve_app.optimize.prune import prune_heads, prune_magnitude, prune_random, sparsity
from serve_app.runtime.classifier import load_torch_model
from serve_app.runtime.placement import Placement
from serve_app.runtime.structure import head_counts
from serve_app.runtime.variant import VariantSpec, read_variant, write_variant

Tick = Callable[[str], None]  # progress: called with a short description of the step that just finished
CPU_FP32 = Placement("cpu", torch.float32)


def _auto_class(task: str):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    return AutoModelForSequenceClassification if task == "classification" else AutoModelForCausalLM


def load_parent(parent: Path, task: str):
    """The parent's model in fp32 on CPU (transforms need full-precision weights), and its variant spec."""
    spec = read_variant(parent)
    if spec.runtime != "torch":
        raise PlanError(f"{parent} is an ONNX variant ({'+'.join(spec.transforms)}); optimize its torch parent")
    if spec.quantization:
        raise PlanError(f"{parent} is already quantized ({spec.quantization}); optimize its parent instead")
    as_fp32 = spec.model_copy(update={"dtype": None})
    return load_torch_model(parent, as_fp32, CPU_FP32, _auto_class(task)).eval(), spec


def calibration_batches(tokenizer, texts: list[str], max_length: int = 128, batch: int = 16) -> list[dict]:
    return [tokenizer(texts[i:i + batch], truncation=True, max_length=max_length, padding=True,
                      return_tensors="pt") for i in range(0, len(texts), batch)]


def _original_heads(model, already_removed: dict[int, list[int]]) -> list[list[int]]:
    """For each layer, the original indices of the heads it still has."""
    total = model.config.num_attention_heads
    return [[h for h in range(total) if h not in set(already_removed.get(i, []))]
            for i in range(len(head_counts(model)))]


def build_variant(parent: Path, plan: Plan, task: str, out: Path, calibration: list[str] | None = None,
                  tick: Tick | None = None, distill_texts: list[str] | None = None,
                  distill_settings: DistillSettings | None = None) -> dict:
    """Write the variant into `out` (which must exist). Returns what the build measured (sparsity, heads...).
    `calibration`: texts to rank heads / calibrate static int8; `distill_texts`: a layer-pruned student's
    training texts (unlabeled, never the evaluation split)."""
    from transformers import AutoTokenizer

    tick = tick or (lambda _: None)
    model, parent_spec = load_parent(parent, task)
    tokenizer = AutoTokenizer.from_pretrained(parent)
    pruned = {int(k): list(v) for k, v in parent_spec.pruned_heads.items()}
    info: dict = {}
    for step in plan.prune:
        if step.method == "random":
            prune_random(model, step.amount)
        elif step.method == "magnitude":
            prune_magnitude(model, step.amount, step.scope)
        elif step.method == "layers":
            settings = distill_settings or DistillSettings()
            if plan.max_length:  # a student that will only ever read `max_length` tokens learns at that length
                settings = replace(settings, student_length=min(settings.student_length, plan.max_length))
            pruned = _prune_layers(model, tokenizer, step, pruned, distill_texts, settings, info, tick)
        else:
            pruned = _prune_heads(model, tokenizer, step, pruned, calibration, info)
        info["sparsity"] = round(sparsity(model), 4)
        tick(step.label)
    spec = VariantSpec(runtime=plan.runtime, pruned_heads=pruned, max_length=plan.max_length or parent_spec.max_length,
                       transforms=[*parent_spec.transforms, *plan.transforms])
    tokenizer.save_pretrained(out)
    if plan.runtime == "onnx":
        if plan.quantize == "int8-static" and not calibration:
            raise PlanError("static int8 needs calibration texts for its activation ranges")
        feeds = [onnx_ops.sample_inputs(tokenizer, calibration[i:i + 16], max_length=spec_length(plan))
                 for i in range(0, len(calibration or []), 16)] if plan.quantize == "int8-static" else []
        _write_onnx(model, tokenizer, plan, out, spec, info, tick, feeds)
    else:
        _write_torch(model, plan, out, spec, tick)
    info["size_mb"] = round(weights_size(out) / 1e6, 2)
    return info


def _prune_heads(model, tokenizer, step, pruned: dict[int, list[int]], calibration: list[str] | None,
                 info: dict) -> dict[int, list[int]]:
    if not calibration:
        raise PlanError("head pruning needs calibration texts to rank the heads")
    kept = _original_heads(model, pruned)
    removed = prune_heads(model, calibration_batches(tokenizer, calibration), step.amount)
    for layer, heads in removed.items():
        pruned.setdefault(layer, []).extend(kept[layer][h] for h in heads)
    pruned = {k: sorted(v) for k, v in sorted(pruned.items())}
    info["heads_removed"] = sum(len(v) for v in pruned.values())
    info["head_counts"] = head_counts(model)
    return pruned


def _prune_layers(model, tokenizer, step, pruned: dict[int, list[int]], texts: list[str] | None,
                  settings: DistillSettings, info: dict, tick: Tick) -> dict[int, list[int]]:
    """Remove blocks, then distill the student from the model as it was; heads removed earlier keep their
    blocks' new indices."""
    if not texts:
        raise PlanError("layer pruning needs training texts to distill the smaller model from its parent")
    targets = teacher_logits(model, tokenizer, texts, settings.teacher_length)
    tick(f"parent's answers on {len(texts)} training texts")
    try:
        keep = remove_layers(model, step.amount)
    except ValueError as err:
        raise PlanError(str(err)) from None
    info["layers_kept"] = keep
    info["distill_kl"] = round(distill(model, targets, tokenizer, texts, settings, tick), 5)
    return {new: pruned[old] for new, old in enumerate(keep) if old in pruned}


def spec_length(plan: Plan) -> int:
    """Tokens per calibration text: the variant's own input length (128 when it keeps the parent's)."""
    return plan.max_length or 128


def _write_torch(model, plan: Plan, out: Path, spec: VariantSpec, tick: Tick) -> None:
    if plan.quantize in ("bf16", "fp16"):
        spec.dtype = {"bf16": "bfloat16", "fp16": "float16"}[plan.quantize]
        model = model.to(getattr(torch, spec.dtype))
    elif plan.quantize == "int8":
        spec.quantization = "dynamic-int8"  # packed int8 weights are not tensors: quantized at load
    model.save_pretrained(out)
    write_variant(out, spec)
    tick("saved")


def _write_onnx(model, tokenizer, plan: Plan, out: Path, spec: VariantSpec, info: dict, tick: Tick,
                calibration_feeds: list[dict]) -> None:
    probe = ["A short headline.", "A longer text about markets, elections and football " * 8]
    feed = onnx_ops.sample_inputs(tokenizer, probe, max_length=64)
    with torch.inference_mode():
        reference = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.numpy()
    with tempfile.TemporaryDirectory() as tmp:
        raw, fused = Path(tmp) / "raw.onnx", Path(tmp) / "fused.onnx"
        onnx_ops.export_classifier(model, feed, raw)
        tick("exported to ONNX")
        cfg = model.config
        # Uniform head counts let the optimizer build fused Attention ops; pruned layers keep their own graph.
        heads = cfg.num_attention_heads if not spec.pruned_heads else 0
        info["fused"] = onnx_ops.fuse(raw, fused, feed, reference, heads, cfg.hidden_size if heads else 0)
        tick("graph fused" if info["fused"] else "graph kept unfused")
        target = out / "model.onnx"
        if plan.quantize == "int8":
            onnx_ops.quantize_int8(fused, target)
            spec.quantization = "int8"
        elif plan.quantize == "int8-static":
            onnx_ops.quantize_int8_static(raw, target, calibration_feeds)
            spec.quantization = "int8"
        elif plan.quantize == "int4":
            onnx_ops.quantize_int4(fused, target)
            spec.quantization = "int4"
        else:
            fused.replace(target)
        if plan.quantize:
            tick(f"quantized {plan.quantize}")
    info["max_logit_diff"] = round(float(abs(onnx_ops.run_onnx(target, feed) - reference).max()), 5)
    spec.onnx_file = "model.onnx"
    model.config.save_pretrained(out)
    write_variant(out, spec)


def weights_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.suffix in (".safetensors", ".onnx", ".gguf"))

