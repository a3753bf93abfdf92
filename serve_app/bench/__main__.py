"""`make bench` (`python -m serve_app.bench`): start a local Ray + gateway, a naive FastAPI server, the peers
(LitServe, plain Ray Serve: bench/peers.py) and the raw model, measure them side by side, write docs/bench/{bench.md,bench.json,throughput.png,p99.png}.

Needs the prepared models (`make models`). Loopback only; bounded by --window and --repeats (the default run
takes about 25 minutes on 2 cores: most of it the generation bench, P5/P10/P11, and the concurrency sweep).
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from serve_app.bench import report
from serve_app.bench.generation import GenSettings
from serve_app.bench.suite import BenchSettings, bench_models, run
from serve_app.config.serve_env import use_fast_path

console = Console()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {seconds:g} s")


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, {gpu}"


def best_gated_variant(registry, tmp: Path, tick) -> tuple[Path, str]:
    """classifier@stable's int8 ONNX variant if it passes the gate (built and registered in a scratch copy)."""
    from serve_app.optimize.evaluate import bbc_held_out
    from serve_app.optimize.pipeline import optimize
    from serve_app.optimize.plan import make_plan
    from serve_app.registry import Registry

    scratch = Registry(str(tmp / "store"), cache_dir=tmp / "cache")
    parent = registry.pull(registry.resolve("classifier@stable"))
    scratch.register("classifier", parent)
    result = optimize(scratch, "classifier@1", make_plan("classification", runtime="onnx", quantize="int8"),
                      bbc_held_out(), rounds=2, tick=tick)
    if not result.accepted:
        return parent, f"none passed the gate (int8 ONNX dropped {result.drop} points): torch fp32"
    return scratch.pull(result.version), f"int8 ONNX (accuracy drop {result.drop:+g} points)"


def start_serve_on_free_ports(config, attempts: int = 3) -> tuple[int, int]:
    from ray import serve

    from deployments.assemble import start_serve

    for attempt in range(attempts):
        http_port, grpc_port = free_port(), free_port()
        try:
            start_serve(config, "127.0.0.1", http_port, grpc_port)
            return http_port, grpc_port
        except Exception as err:  # Ray wraps the proxy's bind error in a RayTaskError
            if "bind" not in str(err) or attempt == attempts - 1:
                raise
            serve.shutdown()
    raise AssertionError("unreachable")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m serve_app.bench")
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=float, default=5.0, help="seconds per target and concurrency")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--concurrencies", default="1,4,16,32,64", help="comma-separated; must include 32")
    args = parser.parse_args()

    use_fast_path()
    import ray
    from ray import serve

    from deployments.assemble import deploy

    from serve_app.plan import open_registry
    from serve_app.bench.peers import plain_serve_app
    from serve_app.builders import bbc
    from serve_app.config import load_config, parse_config
    from serve_app.config.settings import GatewaySettings
    from serve_app.optimize.cli import quiet_transformers
    from serve_app.runtime.classifier import load_classifier

    quiet_transformers()
    settings = BenchSettings(repeats=args.repeats, window_s=args.window, generation=GenSettings(repeats=args.repeats),
                             concurrencies=[int(c) for c in args.concurrencies.split(",")])
    registry = open_registry(load_config(args.config))
    _, held_out = bbc.split(bbc.load_articles())
    texts = [a.text for a in held_out]
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp, \
            Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()) as progress:
        task = progress.add_task("bench")

        def tick(step: str) -> None:
            progress.update(task, description=f"bench: {step}")

        clf_dir = registry.pull(registry.resolve("classifier@stable"))
        sum_dir = registry.pull(registry.resolve("summarizer@stable"))
        fast_dir, fast_note = best_gated_variant(registry, Path(tmp), tick)
        config = parse_config(bench_models({"source": str(clf_dir)}, {"source": str(fast_dir)},
                                           {"source": str(sum_dir)}, settings), settings=GatewaySettings())
        naive_port, lit_port = free_port(), free_port()
        naive = subprocess.Popen([sys.executable, "-m", "serve_app.bench.naive_server", str(clf_dir), "--port",
                                  str(naive_port), "--max-length", str(settings.max_length)])
        lit = subprocess.Popen([sys.executable, "-m", "serve_app.bench.peers", "litserve", str(clf_dir), "--port",
                                str(lit_port), "--max-length", str(settings.max_length)])
        # The peers bind their own helper sockets as they start, and so do Ray's processes: the gateway's
        # ports are chosen once those are up (a port chosen earlier was taken by the time Ray's proxy bound
        # it, which ended a make bench run), and chosen again if binding still fails.
        try:
            wait_http(f"http://127.0.0.1:{naive_port}/healthz")
            wait_http(f"http://127.0.0.1:{lit_port}/health")
        except TimeoutError:
            naive.terminate()
            lit.terminate()
            raise
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="error")
        try:
            tick("starting the gateway")
            http_port, grpc_port = start_serve_on_free_ports(config)
            deploy(config)
            serve.run(plain_serve_app(str(clf_dir), settings.max_length), name="plain", route_prefix="/plain")
            raw = load_classifier(clf_dir, settings.max_length)
            peers = {"LitServe": f"http://127.0.0.1:{lit_port}",
                     "plain Ray Serve": f"http://127.0.0.1:{http_port}/plain"}
            result = run(f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}",
                         f"http://127.0.0.1:{naive_port}", lambda batch: raw.predict(batch, 32), texts, settings,
                         sum_dir, tick, peers)
        finally:
            naive.terminate()
            lit.terminate()
            serve.shutdown()
            ray.shutdown()
    result["best_variant"] = fast_note
    written = report.write(result, args.out, machine())
    console.print(report.markdown(result, machine()))
    console.print("written: " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
