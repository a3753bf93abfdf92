"""What monitoring costs, side by side in one run (real classifier, one short text, p50 of 150 per round):
classify latency with gateway metrics on vs off (alternating rounds), and the sidecar's CPU while Prometheus-style
scrapes hit it once a second. Run after `make models`:  .venv/bin/python -m serve_app.bench.costs.metrics_overhead
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import httpx
import psutil

from serve_app.bench.harness import REPO, deploy_gateway, free_port, local_ray, p50_ms, start_proxies
from serve_app.config import parse_config
from serve_app.config.serve_env import use_fast_path
from serve_app.config.settings import GatewaySettings


def config(metrics: bool):
    return parse_config({"server": {"metrics": metrics},
                         "models": [{"name": "classifier", "task": "classification", "version": "stable",
                                     "max_length": 256, "resources": {"num_cpus": 0.5, "num_gpus": 0, "threads": 2}}]},
                        settings=GatewaySettings(models_dir=REPO / "models"))


def p50(client: httpx.Client, n: int = 150) -> float:
    body = {"texts": ["Shares in the bank fell after the profit warning."]}
    return p50_ms(lambda: client.post("/v1/classify", json=body).raise_for_status(), n)


def metrics_rounds(client: httpx.Client) -> dict[bool, list[float]]:
    """classify p50 per round, metrics on and off in turn, each round a fresh deployment."""
    from ray import serve

    results: dict[bool, list[float]] = {True: [], False: []}
    for metrics in (True, False, True, False):
        deploy_gateway(config(metrics))
        results[metrics].append(p50(client))
        for app in serve.status().applications:
            serve.delete(app)
    return results


def sidecar_cpu(http_port: int, sidecar_port: int) -> float:
    """The sidecar's CPU (% of one core) over 30 scrapes a second apart, against the deployed gateway."""
    sidecar = subprocess.Popen([sys.executable, "-m", "serve_app.ops.sidecar", "--port", str(sidecar_port),
                                "--gateway", f"http://127.0.0.1:{http_port}"])
    time.sleep(3)
    proc = psutil.Process(sidecar.pid)
    before, started = proc.cpu_times(), time.monotonic()
    for _ in range(30):
        httpx.get(f"http://127.0.0.1:{sidecar_port}/metrics").raise_for_status()
        time.sleep(1)
    after, elapsed = proc.cpu_times(), time.monotonic() - started
    sidecar.terminate()
    return (after.user + after.system - before.user - before.system) / elapsed * 100


def main() -> None:
    use_fast_path()
    http_port, metrics_port, sidecar_port = free_port(), free_port(), free_port()
    with local_ray(num_cpus=2, _metrics_export_port=metrics_port):
        start_proxies(config(True), http_port, 0)
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=60) as client:
            results = metrics_rounds(client)
            deploy_gateway(config(True))
            cpu = sidecar_cpu(http_port, sidecar_port)
    on, off = statistics.median(results[True]), statistics.median(results[False])
    print(f"classify p50 with metrics  {on:6.1f} ms  (rounds {[round(x, 1) for x in results[True]]})")
    print(f"classify p50 without       {off:6.1f} ms  (rounds {[round(x, 1) for x in results[False]]})")
    print(f"metrics overhead: {on - off:+.1f} ms ({on / off:.3f}x)")
    print(f"sidecar CPU while scraped every second: {cpu:.2f}% of one core")


if __name__ == "__main__":
    main()
