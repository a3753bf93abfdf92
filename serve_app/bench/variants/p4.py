"""P4: every int8 runtime the optimizer builds, evaluated beside torch fp32 by the optimizer's own loop
(held-out BBC accuracy; batch-16 throughput at 128 tokens, interleaved rounds), and the best gated one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from serve_app.optimize.evaluate import bbc_calibration, bbc_held_out
from serve_app.optimize.pipeline import optimize
from serve_app.optimize.plan import make_plan

INT8_PLANS = {"ORT int8 dynamic": {"runtime": "onnx", "quantize": "int8"},
              "ORT int8 static": {"runtime": "onnx", "quantize": "int8-static"},
              # A sequence-length variant (inputs cut to 64 of the 128 tokens): a candidate for selection
              # when its drop passes the serving gate, and for P4 only within P4's own bound.
              "ORT int8, 64 tokens": {"runtime": "onnx", "quantize": "int8", "max_length": 64}}
MAX_DROP = 0.5  # P4's accuracy bound (points); the serving gate stays the optimizer's default


@dataclass
class Int8Result:
    rows: dict[str, dict]  # plan name -> speedup, accuracy, drop, registered version label (None: not kept)
    best: str | None  # the fastest within MAX_DROP

    @property
    def speedup(self) -> float | None:
        return self.rows[self.best]["speedup"] if self.best else None

    @property
    def registered(self) -> dict[str, str]:
        """Version label -> plan name of every variant that passed the serving gate, fastest first."""
        kept = sorted((r for r in self.rows.items() if r[1]["version"]), key=lambda r: -r[1]["speedup"])
        return {row["version"]: name for name, row in kept}


def measure_int8(scratch, parent_selector: str, max_length: int, rounds: int, tick) -> Int8Result:
    """Build, evaluate and (when within the optimizer's gate) register each int8 plan in `scratch`."""
    examples, calibration = bbc_held_out(), bbc_calibration()
    rows = {}
    for name, args in INT8_PLANS.items():
        result = optimize(scratch, parent_selector, make_plan("classification", **args), examples,
                          calibration=calibration, max_length=max_length, rounds=rounds,
                          tick=lambda s, n=name: tick(f"P4 {n}: {s}"))
        parent, variant = result.metrics["parent"], result.metrics["variant"]
        rows[name] = {"speedup": round(variant["throughput_b16"] / parent["throughput_b16"], 3),
                      "fp32_throughput_b16": parent["throughput_b16"], "throughput_b16": variant["throughput_b16"],
                      "fp32_accuracy": parent["accuracy"], "accuracy": variant["accuracy"], "drop": result.drop,
                      "version": str(result.version.iteration) if result.version else None}
    within = [n for n, r in rows.items() if r["drop"] <= MAX_DROP and r["version"]]
    return Int8Result(rows, max(within, key=lambda n: rows[n]["speedup"]) if within else None)


def p4_row(result: Int8Result) -> dict:
    value = result.speedup
    best = result.rows.get(result.best or "", {})
    return {"id": "P4", "measure": f"best int8 variant ({result.best or 'none within the bound'}) ÷ torch fp32 "
            f"classifier throughput, batch 16, 128 tokens (accuracy drop {best.get('drop', 'n/a')} points)",
            "value": value, "target": f">= 2.5, drop <= {MAX_DROP:g}",
            "met": value is not None and value >= 2.5 and best["drop"] <= MAX_DROP}


def registered_dir(scratch, label: str) -> Path:
    return scratch.pull(scratch.resolve(f"classifier@{label}"))
