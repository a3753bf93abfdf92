"""P4: the int8 variants the optimizer builds, gated and registered by its own loop, then measured side by side
with torch fp32 in one interleaved evaluation (held-out BBC accuracy; batch-16 throughput at 128 tokens).

Distilled students (blocks removed, then trained on the parent's answers) are built once and registered as
variants of their own; their int8 variants are optimized from them, so the registry's lineage reads
fp32 -> student -> int8, as a user running `gateway optimize` twice would have it. The 64-token students are
one plan each from fp32 instead: the gate compares a variant with its parent, and a student reads 128 tokens
better than fp32 does, so its own 64-token cut is judged against fp32, the model it would replace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from serve_app.bench.judge import GE, judge
from serve_app.optimize.evaluate import bbc_calibration, bbc_held_out, bbc_training_texts, evaluate_classifiers
from serve_app.optimize.pipeline import optimize
from serve_app.optimize.plan import make_plan

STUDENTS = {"distilled 3 layers": ["layers:0.5"], "distilled 2 layers": ["layers:0.67"]}
INT8_PLANS = {  # name -> (student it starts from or None for fp32, make_plan arguments)
    "ORT int8 dynamic": (None, {"runtime": "onnx", "quantize": "int8"}),
    "ORT int8 static": (None, {"runtime": "onnx", "quantize": "int8-static"}),
    # A sequence-length variant (inputs cut to 64 of the 128 tokens).
    "ORT int8, 64 tokens": (None, {"runtime": "onnx", "quantize": "int8", "max_length": 64}),
    "distilled 3 layers + ORT int8": ("distilled 3 layers", {"runtime": "onnx", "quantize": "int8"}),
    "distilled 2 layers + ORT int8": ("distilled 2 layers", {"runtime": "onnx", "quantize": "int8"}),
    "distilled 3 layers + ORT int8, 64 tokens": (None, {"prune": ["layers:0.5"], "runtime": "onnx",
                                                        "quantize": "int8", "max_length": 64}),
    "distilled 2 layers + ORT int8, 64 tokens": (None, {"prune": ["layers:0.67"], "runtime": "onnx",
                                                        "quantize": "int8", "max_length": 64}),
}
MAX_DROP = 0.5  # P4's accuracy bound (points); the serving gate stays the optimizer's default


@dataclass
class Int8Result:
    rows: dict[str, dict]  # plan name -> speedup and accuracy against fp32, registered version label
    best: str | None  # the fastest within MAX_DROP of fp32
    refused: list[str] = field(default_factory=list)  # plans the serving gate refused (not measured further)

    @property
    def speedup(self) -> float | None:
        return self.rows[self.best]["speedup"] if self.best else None

    @property
    def registered(self) -> dict[str, str]:
        """Version label -> plan name of every variant that passed the serving gate, fastest first."""
        kept = sorted((r for r in self.rows.items() if r[1]["version"]), key=lambda r: -r[1]["speedup"])
        return {row["version"]: name for name, row in kept}

    @property
    def fastest(self) -> str | None:
        """The fastest variant that passed the serving gate (P2's variant)."""
        return next(iter(self.registered.values()), None)

    @property
    def fastest_full_length(self) -> str | None:
        """P2's variant: the fastest that passed the serving gate and reads the whole 128 tokens the naive server
        reads (a sequence-length variant answers a different question: other rows, not P2)."""
        return next((name for name in self.registered.values()
                     if INT8_PLANS.get(name, (None, {}))[1].get("max_length") is None), None)


def _build(scratch, parent_selector: str, max_length: int, rounds: int, tick) -> dict[str, str | None]:
    """Every student, then every int8 plan, through the optimizer's loop: name -> version label (None: refused)."""
    examples, calibration, texts = bbc_held_out(), bbc_calibration(), bbc_training_texts()
    versions: dict[str, str | None] = {}
    for name, prune in [*STUDENTS.items(), *((n, None) for n in INT8_PLANS)]:
        start, args = (None, {"prune": prune}) if prune else INT8_PLANS[name]
        parent = f"classifier@{versions[start]}" if start else parent_selector
        if start and versions[start] is None:
            versions[name] = None  # its student failed the gate
            continue
        result = optimize(scratch, parent, make_plan("classification", **args), examples, calibration=calibration,
                          distill_texts=texts, max_length=max_length, rounds=rounds,
                          tick=lambda s, n=name: tick(f"P4 {n}: {s}"))
        versions[name] = str(result.version.iteration) if result.version else None
    return versions


def measure_int8(scratch, parent_selector: str, max_length: int, rounds: int, tick) -> Int8Result:
    """Build, gate and register each plan in `scratch`, then measure every int8 variant beside fp32 at once."""
    versions = _build(scratch, parent_selector, max_length, rounds, tick)
    built = {name: scratch.pull(scratch.resolve(f"classifier@{label}"))
             for name, label in versions.items() if label and name in INT8_PLANS}
    folders = {"torch fp32": scratch.pull(scratch.resolve(parent_selector)), **built}
    metrics = evaluate_classifiers(folders, bbc_held_out(), max_length, rounds,
                                   tick=lambda s: tick(f"P4 side by side: {s}"))
    fp32 = metrics.pop("torch fp32")
    rows = {name: {"speedup": round(m["throughput_b16"] / fp32["throughput_b16"], 3),
                   "fp32_throughput_b16": fp32["throughput_b16"], "throughput_b16": m["throughput_b16"],
                   "fp32_accuracy": fp32["accuracy"], "accuracy": m["accuracy"],
                   "drop": round(fp32["accuracy"] - m["accuracy"], 2), "version": versions[name]}
            for name, m in metrics.items()}
    within = [n for n, r in rows.items() if r["drop"] <= MAX_DROP]
    refused = [name for name in INT8_PLANS if not versions[name]]
    return Int8Result(rows, max(within, key=lambda n: rows[n]["speedup"]) if within else None, refused)


def p4_row(result: Int8Result) -> dict:
    best = result.rows.get(result.best or "", {})
    row = judge("P4", f"best int8 variant ({result.best or 'none within the bound'}) ÷ torch fp32 classifier "
                f"throughput, batch 16, 128 tokens (accuracy drop {best.get('drop', 'n/a')} points)",
                [result.speedup], GE, 2.5, [] if result.best else ["no int8 variant within the accuracy bound"])
    return {**row, "target": f">= 2.5, drop <= {MAX_DROP:g}"}  # `best` is within the bound by construction


def registered_dir(scratch, label: str) -> Path:
    return scratch.pull(scratch.resolve(f"classifier@{label}"))
