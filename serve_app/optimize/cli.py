"""`gateway optimize`, `gateway optimize-report` and `gateway edge-bundle`."""

from __future__ import annotations

import argparse
from pathlib import Path

from serve_app.optimize.display import console, metrics_table, progress_line
from serve_app.optimize.plan import GGUF_QUANTIZATIONS, QUANTIZATIONS, RUNTIMES, PlanError, make_plan


def add_parsers(sub) -> None:
    opt = sub.add_parser("optimize", help="build, evaluate, gate and register an optimized variant")
    opt.add_argument("selector", help="registry version to start from, e.g. classifier@stable")
    opt.add_argument("--prune", action="append", default=[], metavar="METHOD:FRACTION",
                     help="random:0.3, magnitude:0.5[:layer|global], heads:0.25 or layers:0.5 (blocks removed, "
                          "then distilled from the parent); repeat to compose")
    opt.add_argument("--quantize", choices=sorted({*QUANTIZATIONS, *GGUF_QUANTIZATIONS}),
                     help="int8, int8-static, int4, bf16, fp16; with --runtime llama.cpp a GGUF type (q4_0, "
                          "q8_0...); with --runtime vllm the dtype it computes in (bf16, fp16, fp32)")
    opt.add_argument("--runtime", choices=list(RUNTIMES), default=None,
                     help="torch or onnx; llama.cpp for a GGUF requantization; vllm for a vLLM variant of a "
                          "summarizer (default: the parent's engine)")
    opt.add_argument("--max-length", type=int, default=None,
                     help="a sequence-length variant: inputs cut to this many tokens (classifiers)")
    opt.add_argument("--max-drop", type=float, default=1.0, help="largest quality drop accepted, in points")
    opt.add_argument("--alias", help="point this alias at the registered variant (e.g. fast)")
    opt.add_argument("--dry-run", action="store_true", help="evaluate and gate, but register nothing")
    opt.add_argument("--eval-limit", type=int, default=None, help="classifiers: first N held-out articles only")
    opt.add_argument("--summaries", type=int, default=5, help="summarizers: held-out articles to summarize")
    opt.add_argument("--keep", type=Path, help="also copy the variant folder here")
    opt.set_defaults(handler=_cmd_optimize)
    rep = sub.add_parser("optimize-report", help="every variant of both default models: table, JSON and plot")
    rep.add_argument("--out", type=Path, default=Path("docs/optimization"))
    rep.add_argument("--quick", action="store_true", help="fewer articles and rounds (a smoke run)")
    rep.set_defaults(handler=_cmd_report)
    edge = sub.add_parser("edge-bundle", help="a folder that runs an ONNX classifier with onnxruntime only")
    edge.add_argument("selector", help="an ONNX version, e.g. classifier@fast")
    edge.add_argument("out", type=Path)
    edge.set_defaults(handler=_cmd_edge)
    for p in (opt, rep, edge):
        p.add_argument("--config", type=Path, default=None, help="gateway YAML (default: GATEWAY_CONFIG)")


def _cmd_optimize(registry, args: argparse.Namespace) -> int:
    return optimize_variant(registry, args.selector, prune=args.prune, quantize=args.quantize, runtime=args.runtime,
                            max_length=args.max_length, max_drop=args.max_drop, alias=args.alias,
                            dry_run=args.dry_run, eval_limit=args.eval_limit, summaries=args.summaries,
                            keep=args.keep)


def optimize_variant(registry, selector: str, *, prune: list[str] = (), quantize: str | None = None,
                     runtime: str | None = None, max_length: int | None = None, max_drop: float = 1.0,
                     alias: str | None = None, dry_run: bool = False, eval_limit: int | None = None,
                     summaries: int = 5, keep: Path | None = None) -> int:
    """Build, evaluate, gate and register one variant, showing progress and the verdict. Returns the exit code:
    0 registered (or accepted in a dry run), 1 refused by the gate, 2 a plan that cannot be built."""
    from serve_app.optimize.evaluate import bbc_calibration, bbc_headlines, bbc_held_out, bbc_training_texts
    from serve_app.optimize.pipeline import default_runtime, optimize, task_of

    try:
        parent = registry.resolve(selector)
        parent_dir = registry.pull(parent)
        task = task_of(parent_dir)
        plan = make_plan(task, list(prune), quantize, runtime or default_runtime(parent_dir), max_length)
    except PlanError as err:
        console.print(f"[red]error:[/] {err}")
        return 2
    examples = bbc_held_out(eval_limit) if task == "classification" else bbc_headlines(summaries)
    calibration = bbc_calibration() if plan.needs_calibration else None
    distill_texts = bbc_training_texts() if plan.needs_distillation else None
    with progress_line(f"{parent.label} -> {plan.label}") as tick:
        try:
            result = optimize(registry, selector, plan, examples, calibration=calibration,
                              distill_texts=distill_texts, max_drop=max_drop, register=not dry_run,
                              alias=alias, tick=tick, keep=keep)
        except PlanError as err:
            console.print(f"[red]error:[/] {err}")
            return 2
    console.print(metrics_table(f"{parent.label} vs {plan.label} ({len(examples)} held-out articles)",
                                result.metrics))
    built = ", ".join(f"{k} {v}" for k, v in result.build.items())
    console.print(f"build: {built}")
    verdict = f"{result.quality_key} drop {result.drop:+g} points (gate: at most {result.max_drop:g})"
    if not result.accepted:
        console.print(f"[red]refused[/]: {verdict}; nothing registered")
        return 1
    if result.version is None:
        console.print(f"[green]accepted[/]: {verdict} (dry run: not registered)")
        return 0
    named = f", alias {alias}" if alias else ""
    console.print(f"[green]registered {result.version.label}[/] (parent {parent.label}, transform {plan.label}"
                  f"{named}): {verdict}")
    return 0


def _cmd_report(registry, args: argparse.Namespace) -> int:
    from serve_app.optimize.report import run_report

    run_report(registry, args.out, quick=args.quick, console=console)
    return 0


def _cmd_edge(registry, args: argparse.Namespace) -> int:
    from serve_app.optimize.edge import write_bundle

    version = registry.resolve(args.selector)
    folder = write_bundle(registry.pull(version), args.out, model=version.name, version=str(version.iteration))
    console.print(f"edge bundle in {folder}: python {folder / 'run.py'} \"some text\"  "
                  "(needs only: pip install onnxruntime tokenizers numpy)")
    return 0
