"""What every measurement in bench/ needs around it: free loopback ports, a local Ray and the gateway started on
them, waiting for a server to answer, a p50 of sequential calls, one progress line, and the machine's
description for the report.

The only module of bench/ that starts the gateway (`deployments.assemble`): the measurements call it from here.
"""

from __future__ import annotations

import os
import platform
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listener(port: int) -> str | None:
    """The name of the process that listens on TCP `port` (e.g. `haproxy` or `ray::ProxyActor`), so a result
    can say which front answered; None when no process of this user listens there."""
    import psutil  # Ray's own dependency

    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            try:
                return psutil.Process(conn.pid).name()
            except psutil.Error:
                return None
    return None


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


def p50_ms(fn: Callable[[], object], n: int) -> float:
    """Median milliseconds of `n` sequential calls of `fn`, after one untimed call (the warm-up)."""
    fn()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


@contextmanager
def naive_server(model_dir: Path, max_length: int) -> Iterator[str]:
    """The naive FastAPI + transformers server (bench/naive_server.py) in its own process: its base URL."""
    import subprocess
    import sys

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "serve_app.bench.naive_server", str(model_dir), "--port",
                             str(port), "--max-length", str(max_length)])
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, {gpu}"


@contextmanager
def local_ray(**options) -> Iterator[None]:
    """A local Ray (never a leftover cluster) for one measurement; Serve and Ray are shut down after it.
    `options` go to `ray.init` (e.g. num_cpus=2, log_to_driver=False, _metrics_export_port=...)."""
    import ray
    from ray import serve

    ray.init(address="local", include_dashboard=False, logging_level="error", **options)
    try:
        yield
    finally:
        serve.shutdown()
        ray.shutdown()


def open_gateway_registry(config_path: Path | None):
    """The model registry the gateway config at `config_path` (None: GATEWAY_CONFIG or the default) names."""
    from serve_app.config import load_config
    from serve_app.plan import open_registry

    return open_registry(load_config(config_path))


def start_proxies(config, http_port: int, grpc_port: int = 0) -> None:
    """Ray Serve's HTTP proxy on loopback and, unless `grpc_port` is 0, its gRPC proxy (OIP)."""
    from deployments.assemble import start_serve

    start_serve(config, "127.0.0.1", http_port, grpc_port)


def deploy_gateway(config, **options) -> None:
    """The gateway's applications, one per model version, and its ingress (`options`: e.g. gpus_in_cluster)."""
    from deployments.assemble import deploy

    deploy(config, **options)


def start_gateway(config, http_port: int, grpc_port: int = 0, **options) -> None:
    start_proxies(config, http_port, grpc_port)
    deploy_gateway(config, **options)


def start_proxies_on_free_ports(config, attempts: int = 3) -> tuple[int, int]:
    """(http, grpc) ports Serve's proxies bound: chosen free, and chosen again if another process took one first."""
    from ray import serve

    for attempt in range(attempts):
        http_port, grpc_port = free_port(), free_port()
        try:
            start_proxies(config, http_port, grpc_port)
            return http_port, grpc_port
        except Exception as err:  # Ray wraps the proxy's bind error in a RayTaskError
            if "bind" not in str(err) or attempt == attempts - 1:
                raise
            serve.shutdown()
    raise AssertionError("unreachable")


@contextmanager
def progress_ticker(title: str, console=None, keep: Callable[[str], bool] = lambda step: False
                    ) -> Iterator[Callable[[str], None]]:
    """One progress line `title: step`; `tick(step)` moves it on, and steps that `keep` picks stay on screen."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from serve_app.optimize.display import plain_ticks

    console = console or Console()
    if not console.is_terminal:  # a log or CI: plain lines, and the kept steps in full
        plain = plain_ticks(console, title)

        def tick_plain(step: str) -> None:
            if keep(step):
                console.print(step, highlight=False)
            else:
                plain(step)
        yield tick_plain
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task(title)

        def tick(step: str) -> None:
            bar.update(task, description=f"{title}: {step}")
            if keep(step):
                bar.console.log(step)

        yield tick
