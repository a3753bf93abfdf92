"""`python -m serve_app.bench.variants` (part of `make bench`): P4, P12, P13 and P2 in one run, written to
docs/bench/variants.json and merged by target id into docs/bench/bench.json and bench.md.

A scratch registry holds the prepared fp32 classifier (iteration 1) and the variants the optimizer builds and
gates (P4: int8 runtimes, distilled students, 64-token inputs). A few of them serve beside fp32 as selection
candidates, with a response cache, on a local Ray Serve (P12, P13). Then the fastest gated variant is served
alone against the naive FastAPI fp32 server, once behind each HTTP front (P2; a process each, since Ray reads
the front when it starts). Loopback only; about 30 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
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
from serve_app.bench.judge import GE, LE, failures, judge, ratio
from serve_app.bench.variants.p4 import Int8Result, measure_int8, p4_row, registered_dir
from serve_app.bench.variants.slo import Loop, p12, p13
from serve_app.config.serve_env import use_fast_path
from serve_app.plan import gated_accuracy

console = Console()


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m serve_app.bench.variants")
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--window", type=float, default=10.0, help="seconds per P12 window")
    parser.add_argument("--concurrency", type=int, default=8, help="P12's closed-loop clients")
    parser.add_argument("--rounds", type=int, default=4, help="P4's interleaved speed rounds")
    parser.add_argument("--p2-window", type=float, default=10.0, help="seconds per P2 window")
    return parser.parse_args(argv)


def candidates(p4: Int8Result, most: int = 3) -> list[str]:
    """The selection candidates beside fp32: P4's best, the fastest gated, then the next fastest; at most
    `most` (each is a replica holding CPU: four of them and the ingress fill the 2 cores Ray is given)."""
    by_name = {name: label for label, name in p4.registered.items()}
    chosen = [by_name[n] for n in (p4.best, p4.fastest) if n in by_name]
    chosen += [label for label in p4.registered if label not in chosen]
    return list(dict.fromkeys(chosen))[:most]


def p2_runs(fp32_dir: Path, variant_dir: Path, args, tick) -> dict[str, dict]:
    """P2 behind each HTTP front, a fresh process (and Ray) each."""
    out = {}
    for front in ("haproxy", "ray"):
        tick(f"P2 behind the {front} front (its own process)")
        target = Path(tempfile.mkstemp(suffix=".json")[1])
        subprocess.run([sys.executable, "-m", "serve_app.bench.variants.p2", str(fp32_dir), str(variant_dir),
                        "--front", front, "--window", str(args.p2_window), "--repeats", str(args.repeats),
                        "--out", str(target)], check=True)
        out[front] = json.loads(target.read_text())
        target.unlink()
    return out


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


def p2_rows(p2: dict[str, dict], variant: str) -> list[dict]:
    """P2 as the target reads (the gateway configured for throughput: the HAProxy front), and beside it the same
    measurement behind the default front (Ray's proxy), so neither figure is quoted without the other. A run
    with a failed or wrong answer, or a haproxy run whose port HAProxy was not seen holding, is not measured."""
    out = []
    for front, tag in (("haproxy", "P2"), ("ray", "P2-ray-front")):
        if front not in p2:
            continue
        run = p2[front]
        rounds = run.get("rounds", [])
        problems = [*failures([r["naive"] for r in rounds], "naive FastAPI"),
                    *failures([r["gateway"] for r in rounds], "gateway")]
        if front == "haproxy" and run.get("listener") != "haproxy":
            problems.append(f"the HAProxy front was not proven: the port was held by {run.get('listener')!r}")
        out.append(judge(tag, f"gateway ({front} HTTP front) serving its fastest gated variant ({variant}) ÷ "
                         f"naive FastAPI fp32 server, concurrency {run['concurrency']}",
                         [ratio(r["gateway"]["rps"], r["naive"]["rps"]) for r in rounds], GE, 4, problems))
    return out


def rows(p4, measured: dict | None, int8_accuracy: float | None) -> list[dict]:
    out = [p4_row(p4)]
    if measured is None:
        return out
    slo, cache = measured["p12"], measured["p13"]
    problems = []
    if slo.get("failed_by_status"):
        problems.append(f"requests failed (by status): {slo['failed_by_status']}")
    if slo["fp32_alone_p95_ms"] <= slo["budget_ms"]:
        problems.append("fp32 alone already meets the budget: not the load P12 is about")
    p12_row = judge("P12", f"share within a {slo['budget_ms']:g} ms budget at concurrency {slo['concurrency']}: "
                    f"SLO-aware selection ÷ fp32 alone (fp32 alone p95 {slo['fp32_alone_p95_ms']:g} ms; answers' "
                    f"mean accuracy {slo['mean_accuracy']:g}, int8 gated {int8_accuracy:g})",
                    [r["ratio"] for r in slo.get("rounds", [])] or [slo["ratio"]], GE, 2, problems)
    if p12_row["met"] and slo["mean_accuracy"] < int8_accuracy:  # the second half of the target
        p12_row = {**p12_row, "met": False, "status": "missed"}
    out.append({**p12_row, "target": ">= 2, mean accuracy >= int8's"})
    out.append(judge("P13", "response cache hit p50 ÷ uncached p50, same request (HTTP, sequential)",
                     [r["ratio"] for r in cache.get("rounds", [])] or [cache["ratio"]], LE, 0.2))
    p2 = p2_rows(measured.get("p2", {}), p4.fastest_full_length or "none")
    if not p2:
        why = ("no gated variant reads the naive server's 128 tokens" if p4.fastest_full_length is None
               else "P2 did not run")
        p2 = [judge("P2", "gateway serving its fastest gated variant at 128 tokens ÷ naive FastAPI fp32 server, "
                    "concurrency 32", [], GE, 4, [why])]
    return out + p2


def serve_variants(scratch, tmp: Path, p4: Int8Result, args, tick) -> tuple[dict | None, float | None]:
    """P12 and P13 on a gateway serving fp32 with a few gated variants as candidates; then P2."""
    from serve_app.builders import bbc

    chosen = candidates(p4)
    if not chosen:
        return None, None
    # P12's int8 variant: P4's best (the int8 variant within P4's accuracy bound), else the fastest gated one.
    int8 = next(label for label, name in p4.registered.items() if name == (p4.best or p4.fastest))
    accuracy = {str(v.iteration): gated_accuracy(v.metrics) for v in scratch.versions("classifier")}
    _, held_out = bbc.split(bbc.load_articles())
    config = gateway_config(tmp, chosen)
    with local_ray(num_cpus=2):
        http_port, _ = start_proxies_on_free_ports(config)
        deploy_gateway(config)
        measured = asyncio.run(serve_targets(f"http://127.0.0.1:{http_port}", [a.text for a in held_out],
                                             accuracy, int8, args, tick))
    p2_variant = p4.fastest_full_length
    if p2_variant is not None:
        label = next(label for label, name in p4.registered.items() if name == p2_variant)
        measured["p2"] = p2_runs(registered_dir(scratch, "1"), registered_dir(scratch, label), args, tick)
    measured["selection_candidates"] = {label: p4.registered[label] for label in chosen}
    return measured, accuracy[int8]


def measure(args, tick) -> dict:
    from serve_app.registry import Registry

    source = open_gateway_registry(None)
    stable = source.resolve("classifier@stable")
    with tempfile.TemporaryDirectory(prefix="gateway-variants-") as tmp:
        scratch = Registry(str(Path(tmp) / "store"), cache_dir=Path(tmp) / "cache")
        scratch.register("classifier", source.pull(stable), metrics=stable.metrics, source_uri="classifier@stable")
        p4 = measure_int8(scratch, "classifier@1", 128, args.rounds, tick)
        measured, int8_accuracy = serve_variants(scratch, Path(tmp), p4, args, tick)
    return {"p4": p4.rows, "p4_refused": p4.refused, "best_int8": p4.best, "fastest_gated": p4.fastest,
            "gated_variants": p4.registered, **(measured or {}), "targets": rows(p4, measured, int8_accuracy)}


def main(argv=None) -> int:
    args = parse_args(argv)
    use_fast_path()
    from serve_app.optimize.display import quiet_transformers

    quiet_transformers()
    with progress_ticker("variants bench") as tick:
        result = measure(args, tick)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "variants.json").write_text(json.dumps({"machine": machine(), **result}, indent=2) + "\n")
    report.merge_step(args.out, "variants", result["targets"])
    for t in result["targets"]:
        console.print(f"{t['id']}: {t['value']} (target {t['target']}) {'met' if t['met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
