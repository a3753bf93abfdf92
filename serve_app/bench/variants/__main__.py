"""`python -m serve_app.bench.variants` (part of `make bench`): P4, P12 and P13 in one run, written to
docs/bench/variants.json and merged by target id into docs/bench/bench.json and bench.md.

A scratch registry holds the prepared fp32 classifier (iteration 1) and the int8 variants the optimizer builds
and gates (P4); the fastest within P4's accuracy bound then serves beside fp32 as a selection candidate, with a
response cache, on a local Ray Serve (P12, P13). Loopback only; about 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

import httpx
from rich.console import Console

from serve_app.bench import report
from serve_app.bench.harness import (
    deploy_gateway,
    local_ray,
    machine,
    open_gateway_registry,
    progress_ticker,
    start_proxies_on_free_ports,
)
from serve_app.bench.variants.p4 import measure_int8, p4_row
from serve_app.bench.variants.slo import Loop, p12, p13
from serve_app.config.serve_env import use_fast_path
from serve_app.plan import gated_accuracy

console = Console()


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m serve_app.bench.variants")
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=float, default=8.0, help="seconds per P12 window")
    parser.add_argument("--concurrency", type=int, default=8, help="P12's closed-loop clients")
    parser.add_argument("--rounds", type=int, default=4, help="P4's interleaved speed rounds")
    return parser.parse_args(argv)


def gateway_config(store: Path, variants: list[str]):
    from serve_app.config import parse_config
    from serve_app.config.settings import GatewaySettings

    return parse_config({
        "registry": {"uri": str(store / "store"), "cache_dir": str(store / "cache")},
        "models": [{"name": "clf", "task": "classification", "registry_model": "classifier", "version": "1",
                    "max_length": 128, "selection": {"variants": variants}, "cache": {"max_bytes": 64 << 20},
                    "resources": {"replicas": 1, "num_cpus": 0.4, "num_gpus": 0, "threads": 2},
                    "batching": {"max_batch_size": 16, "batch_wait_timeout_s": 0.0, "max_concurrent_batches": 2}}],
    }, settings=GatewaySettings())


async def serve_targets(url: str, texts: list[str], accuracy: dict[str, float], int8: str, args, tick) -> dict:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        loop = Loop(http, texts)
        await loop.run("clf", 2, 2.0)  # warm both paths
        slo = await p12(loop, accuracy, int8, args.concurrency, args.window, args.repeats, tick)
        cache = await p13(http, texts[0], 40, args.repeats, tick)
    return {"p12": slo, "p13": cache}


def rows(p4, measured: dict | None, int8_accuracy: float | None) -> list[dict]:
    out = [p4_row(p4)]
    if measured is None:
        return out
    slo, cache = measured["p12"], measured["p13"]
    out.append({"id": "P12", "measure": f"share within a {slo['budget_ms']:g} ms budget at concurrency "
                f"{slo['concurrency']}: SLO-aware selection ÷ fp32 alone (fp32 alone p95 {slo['fp32_alone_p95_ms']:g} "
                f"ms; answers' mean accuracy {slo['mean_accuracy']:g}, int8 gated {int8_accuracy:g})",
                "value": round(slo["ratio"], 3), "target": ">= 2, mean accuracy >= int8's",
                "met": slo["ratio"] >= 2 and slo["mean_accuracy"] >= int8_accuracy
                and slo["fp32_alone_p95_ms"] > slo["budget_ms"]})
    out.append({"id": "P13", "measure": "response cache hit p50 ÷ uncached p50, same request (HTTP, sequential)",
                "value": round(cache["ratio"], 3), "target": "<= 0.2", "met": cache["ratio"] <= 0.2})
    return out


def merge(out: Path, new_rows: list[dict]) -> None:
    """Replace (or add) these targets in bench.json and re-render bench.md from it."""
    path = out / "bench.json"
    result = json.loads(path.read_text())
    ids = {r["id"] for r in new_rows}
    result["targets"] = [t for t in result["targets"] if t["id"] not in ids] + new_rows
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / "bench.md").write_text(report.markdown(result, result.get("machine", machine())))


def measure(args, tick) -> dict:
    from serve_app.builders import bbc
    from serve_app.registry import Registry

    source = open_gateway_registry(None)
    stable = source.resolve("classifier@stable")
    with tempfile.TemporaryDirectory(prefix="gateway-variants-") as tmp:
        scratch = Registry(str(Path(tmp) / "store"), cache_dir=Path(tmp) / "cache")
        scratch.register("classifier", source.pull(stable), metrics=stable.metrics, source_uri="classifier@stable")
        p4 = measure_int8(scratch, "classifier@1", 128, args.rounds, tick)
        # The fastest variant that passed the serving gate is P12's int8 variant; every gated one is a candidate.
        int8 = next(iter(p4.registered), None)
        measured = int8_accuracy = None
        if int8 is not None:
            accuracy = {str(v.iteration): gated_accuracy(v.metrics) for v in scratch.versions("classifier")}
            int8_accuracy = accuracy[int8]
            _, held_out = bbc.split(bbc.load_articles())
            config = gateway_config(Path(tmp), list(p4.registered))
            with local_ray(num_cpus=2):
                http_port, _ = start_proxies_on_free_ports(config)
                deploy_gateway(config)
                measured = asyncio.run(serve_targets(f"http://127.0.0.1:{http_port}", [a.text for a in held_out],
                                                     accuracy, int8, args, tick))
    return {"p4": p4.rows, "best_int8": p4.best, "selection_variants": p4.registered, **(measured or {}),
            "targets": rows(p4, measured, int8_accuracy)}


def main(argv=None) -> int:
    args = parse_args(argv)
    use_fast_path()
    from serve_app.optimize.display import quiet_transformers

    quiet_transformers()
    with progress_ticker("variants bench") as tick:
        result = measure(args, tick)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "variants.json").write_text(json.dumps({"machine": machine(), **result}, indent=2) + "\n")
    merge(args.out, result["targets"])
    for t in result["targets"]:
        console.print(f"{t['id']}: {t['value']} (target {t['target']}) {'met' if t['met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
