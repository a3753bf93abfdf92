"""`make bench` (`python -m serve_app.bench`): start a local Ray + gateway, a naive FastAPI server, the peers
(LitServe, plain Ray Serve: bench/peers.py) and the raw model, measure them side by side, write
docs/bench/{bench.md,bench.json,throughput.png,p99.png}.

Needs the prepared models (`make models`). Loopback only; bounded by --window and --repeats (the default run
takes about 25 minutes on 2 cores: most of it the generation bench, P5/P10/P11, and the concurrency sweep).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from serve_app.bench import report
from serve_app.bench.generation import GenSettings
from serve_app.bench.harness import (
    deploy_gateway,
    free_port,
    local_ray,
    machine,
    naive_server,
    open_gateway_registry,
    progress_ticker,
    start_proxies_on_free_ports,
    wait_http,
)
from serve_app.bench.suite import BenchSettings, bench_models, run
from serve_app.config.serve_env import use_fast_path

console = Console()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m serve_app.bench")
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    parser.add_argument("--repeats", type=int, default=BenchSettings.repeats)
    parser.add_argument("--window", type=float, default=BenchSettings.window_s,
                        help="seconds per target and concurrency")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--concurrencies", default="1,4,16,32,64", help="comma-separated; must include 32")
    return parser.parse_args(argv)


@contextmanager
def peer_servers(clf_dir: Path, max_length: int) -> Iterator[tuple[str, str]]:
    """The naive FastAPI server and the LitServe peer in their own processes: (naive URL, LitServe URL)."""
    lit_port = free_port()
    # LitServe forks its workers: in a session of their own, they are stopped with it (a SIGTERM to the server
    # alone left them running, children of init).
    lit = subprocess.Popen([sys.executable, "-m", "serve_app.bench.peers", "litserve", str(clf_dir), "--port",
                            str(lit_port), "--max-length", str(max_length)], start_new_session=True)
    try:
        with naive_server(clf_dir, max_length) as naive_url:
            wait_http(f"http://127.0.0.1:{lit_port}/health")
            yield naive_url, f"http://127.0.0.1:{lit_port}"
    finally:
        os.killpg(lit.pid, signal.SIGTERM)


def measure_gateway(config, clf_dir: Path, sum_dir: Path, naive_url: str, lit_url: str, texts: list[str],
                    settings: BenchSettings, tick) -> dict:
    """With Ray up: the gateway and the plain Ray Serve peer deployed, the raw model loaded here, the suite run."""
    from ray import serve

    from serve_app.bench.peers import plain_serve_app
    from serve_app.runtime.classifier import load_classifier

    tick("starting the gateway")
    http_port, grpc_port = start_proxies_on_free_ports(config)
    deploy_gateway(config)
    serve.run(plain_serve_app(str(clf_dir), settings.max_length), name="plain", route_prefix="/plain")
    raw = load_classifier(clf_dir, settings.max_length)
    peers = {"LitServe": lit_url, "plain Ray Serve": f"http://127.0.0.1:{http_port}/plain"}
    return run(f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", naive_url,
               lambda batch: raw.predict(batch, 32), texts, settings, sum_dir, tick, peers)


def bench(args: argparse.Namespace, settings: BenchSettings, texts: list[str]) -> dict:
    from serve_app.config import parse_config
    from serve_app.config.settings import GatewaySettings

    registry = open_gateway_registry(args.config)
    with progress_ticker("bench") as tick:
        clf_dir = registry.pull(registry.resolve("classifier@stable"))
        sum_dir = registry.pull(registry.resolve("summarizer@stable"))
        config = parse_config(bench_models({"source": str(clf_dir)}, {"source": str(sum_dir)}, settings),
                              settings=GatewaySettings())
        # The peers bind their own helper sockets as they start, and so do Ray's processes: the gateway's
        # ports are chosen once those are up (a port chosen earlier was taken by the time Ray's proxy bound
        # it, which ended a make bench run), and chosen again if binding still fails.
        with peer_servers(clf_dir, settings.max_length) as (naive_url, lit_url), local_ray(num_cpus=2):
            result = measure_gateway(config, clf_dir, sum_dir, naive_url, lit_url, texts, settings, tick)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    use_fast_path()
    from serve_app.builders import bbc
    from serve_app.optimize.display import quiet_transformers

    quiet_transformers()
    settings = BenchSettings(repeats=args.repeats, window_s=args.window, generation=GenSettings(repeats=args.repeats),
                             concurrencies=[int(c) for c in args.concurrencies.split(",")])
    _, held_out = bbc.split(bbc.load_articles())
    result = bench(args, settings, [a.text for a in held_out])
    written = report.write(result, args.out, machine())
    from serve_app.bench.generation.__main__ import from_bench

    from_bench(json.loads((args.out / "bench.json").read_text()), args.out, console)  # one run, one source
    console.print(report.markdown(result, machine()))
    console.print("written: " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
