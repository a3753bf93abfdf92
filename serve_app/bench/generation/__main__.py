"""`python -m serve_app.bench.generation`: the generation bench on its own (G1-G4, P5, P10, P11; see the package's
docstring) against a gateway it starts -> docs/bench/generation.{json,png}."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

from serve_app.bench.generation.measure import measure, targets
from serve_app.bench.generation.settings import GenSettings, gateway_config
from serve_app.bench.harness import free_port, local_ray, machine, open_gateway_registry, progress_ticker, start_gateway


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    runs = list(rows[0]["tokens_per_s"])
    colors = ["tab:green" if k.startswith("gateway") else "grey" for k in runs]
    a.bar(runs, [statistics.median(r["tokens_per_s"][k] for r in rows) for k in runs], color=colors)
    a.set_ylabel("generated tokens/s (median of repeats)")
    a.tick_params(axis="x", rotation=30)
    b.bar(runs, [statistics.median(r["p50_ttft_s"][k] for r in rows) for k in runs], color=colors)
    b.set_ylabel("p50 time to first token (s)")
    b.tick_params(axis="x", rotation=30)
    fig.suptitle("Summarizer generation: the gateway (green) beside the engines standalone (grey)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m serve_app.bench.generation")
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="summarizer@stable", help="registry selector of the summarizer")
    parser.add_argument("--source", type=Path, default=None, help="a model folder instead of the registry")
    parser.add_argument("--max-length", type=int, default=GenSettings.max_length, help="article tokens kept")
    parser.add_argument("--tokens", type=int, default=GenSettings.max_new_tokens, help="max_new_tokens")
    parser.add_argument("--prefill-chunk", type=int, default=GenSettings.prefill_chunk,
                        help="prompt tokens per engine step while others decode (default: the engine's)")
    parser.add_argument("--smoke", action="store_true", help="tiny settings, to check the plumbing")
    return parser.parse_args(argv)


def summarizer_dir(args: argparse.Namespace) -> Path:
    if args.source:
        return args.source
    registry = open_gateway_registry(None)
    return registry.pull(registry.resolve(args.model))


def run_bench(sum_dir: Path, texts: list[str], settings: GenSettings, console) -> list[dict]:
    """Start a local Ray and a gateway serving the summarizer, measure, shut down; the rows of `measure`."""
    from serve_app.config import parse_config
    from serve_app.config.settings import GatewaySettings

    config = parse_config(gateway_config(sum_dir, settings), settings=GatewaySettings())
    # A repeat's ratios stay on screen.
    with progress_ticker("generation bench", console, keep=lambda step: "P5" in step) as tick:
        http_port = free_port()
        with local_ray(num_cpus=2):
            tick("starting the gateway")
            start_gateway(config, http_port, 0)
            return asyncio.run(measure(sum_dir, texts, settings, f"http://127.0.0.1:{http_port}", tick))


def write_result(out: Path, result: dict, console) -> None:
    import datetime

    out.mkdir(parents=True, exist_ok=True)
    result = {"date": datetime.date.today().isoformat(), **result}
    (out / "generation.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result["repeats"], out / "generation.png")
    for t in result["targets"]:
        value = "n/a" if t["value"] is None else f"{t['value']:g}"
        console.print(f"{t['id']:>4}  {value:>7}  {t['target']:<7} {'met' if t['met'] else 'NOT MET'}  "
                      f"{t['measure']}")
    console.print(f"written: {out / 'generation.json'}, {out / 'generation.png'}")


def from_bench(bench: dict, out: Path, console) -> None:
    """generation.json (and its plot) from a make bench run's generation rows: the README's generation section
    and its bench table then quote the same run."""
    gen = bench["generation"]
    if not gen["repeats"]:
        return
    write_result(out, {"date": bench.get("date"), "source": "make bench", "machine": bench.get("machine"),
                       "model": "summarizer@stable", "settings": gen["settings"], "repeats": gen["repeats"],
                       "targets": targets(gen["repeats"])}, console)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    from rich.console import Console

    from serve_app.builders import bbc
    from serve_app.optimize.display import quiet_transformers

    quiet_transformers()
    settings = GenSettings.smoke() if args.smoke else GenSettings(
        repeats=args.repeats, max_length=args.max_length, max_new_tokens=args.tokens, prefill_chunk=args.prefill_chunk)
    torch.set_num_threads(settings.threads)
    sum_dir = summarizer_dir(args)
    _, held_out = bbc.split(bbc.load_articles())
    console = Console()
    rows = run_bench(sum_dir, [a.text for a in held_out], settings, console)
    write_result(args.out, {"machine": machine(), "model": str(args.source or args.model),
                            "settings": asdict(settings), "repeats": rows, "targets": targets(rows)}, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
