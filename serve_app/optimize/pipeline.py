"""The loop: build a variant of a registry version, evaluate it beside its parent, gate it, register it."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from serve_app.optimize.build import build_variant
from serve_app.optimize.evaluate import QUALITY_KEY, Example, Tick, evaluate_classifiers, evaluate_summarizers, gate
from serve_app.optimize.gguf import build_gguf_variant
from serve_app.optimize.plan import Plan, PlanError
from serve_app.optimize.vllm_variant import build_vllm_variant
from serve_app.registry import Registry
from serve_app.registry.versions import ModelVersion

DEFAULT_MAX_DROP = 1.0  # quality points (accuracy %, ROUGE-L x100)


@dataclass
class OptimizeResult:
    parent: ModelVersion
    plan: Plan
    task: str
    build: dict
    metrics: dict[str, dict]  # "parent" and "variant"
    accepted: bool
    drop: float
    max_drop: float
    version: ModelVersion | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def quality_key(self) -> str:
        return QUALITY_KEY[self.task]


def default_runtime(folder: Path) -> str:
    """The engine a variant of `folder` runs on unless told: llama.cpp for a GGUF version, else torch."""
    from serve_app.runtime.gguf_summarizer import gguf_file

    return "llama.cpp" if gguf_file(folder) is not None else "torch"


def task_of(folder: Path) -> str:
    """classification or summarization, from the checkpoint's architecture (a GGUF file: a generation model)."""
    if not (Path(folder) / "config.json").is_file() and default_runtime(folder) == "llama.cpp":
        return "summarization"
    archs = json.loads((Path(folder) / "config.json").read_text()).get("architectures") or [""]
    if archs[0].endswith("ForSequenceClassification"):
        return "classification"
    if archs[0].endswith(("ForCausalLM", "ForConditionalGeneration")):
        return "summarization"
    raise PlanError(f"{folder}: architecture {archs[0] or '(none)'} is neither a classifier nor a summarizer")


def optimize(registry: Registry, selector: str, plan: Plan, examples: list[Example], *,
             calibration: list[str] | None = None, distill_texts: list[str] | None = None,
             max_drop: float = DEFAULT_MAX_DROP, register: bool = True,
             alias: str | None = None, max_length: int = 256, rounds: int = 8, tick: Tick | None = None,
             keep: Path | None = None) -> OptimizeResult:
    parent = registry.resolve(selector)
    parent_dir = registry.pull(parent)
    task = task_of(parent_dir)
    with tempfile.TemporaryDirectory(prefix="gateway-optimize-") as tmp:
        out = Path(tmp) / "variant"
        out.mkdir()
        if plan.runtime == "llama.cpp":
            info = build_gguf_variant(parent_dir, plan.quantize, out)
            tick(plan.label)
        elif plan.runtime == "vllm":
            info = build_vllm_variant(parent_dir, plan.quantize, out)
            tick(plan.label)
        else:
            info = build_variant(parent_dir, plan, task, out, calibration, tick, distill_texts)
        folders = {"parent": parent_dir, "variant": out}
        if task == "classification":
            metrics = evaluate_classifiers(folders, examples, max_length, rounds, tick)
        else:
            metrics = evaluate_summarizers(folders, examples, tick=tick)
        accepted, drop = gate(metrics["parent"], metrics["variant"], task, max_drop)
        result = OptimizeResult(parent, plan, task, info, metrics, accepted, drop, max_drop)
        if keep is not None:
            shutil.copytree(out, keep, dirs_exist_ok=True)
        if accepted and register:
            numbers = {k: float(v) for k, v in metrics["variant"].items()} | {"quality_drop": drop}
            result.version = registry.register(
                parent.name, out, parent=parent.iteration, transform=plan.label, metrics=numbers,
                tags={"runtime": plan.runtime, "gate": f"{QUALITY_KEY[task]} drop <= {max_drop:g}"},
                source_uri=f"gateway optimize {parent.label} ({plan.label})")
            if alias:
                registry.set_alias(parent.name, alias, str(result.version.iteration))
    return result
