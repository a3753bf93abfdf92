"""What monitoring costs, side by side in one run (real classifier, one short text, p50 of 150 per round):
classify latency with gateway metrics on vs off (alternating rounds), and the sidecar's CPU while Prometheus-style
scrapes hit it once a second. Run after `make models`:  .venv/bin/python scripts/metrics_overhead.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import httpx  # noqa: E402
import psutil  # noqa: E402

from serve_app.config import parse_config  # noqa: E402
from serve_app.config.settings import GatewaySettings  # noqa: E402


def config(metrics: bool):
    return parse_config({"server": {"metrics": metrics},
                         "models": [{"name": "classifier", "task": "classification", "version": "stable",
                                     "max_length": 256, "resources": {"num_cpus": 0.5, "num_gpus": 0, "threads": 2}}]},
                        settings=GatewaySettings(models_dir=REPO / "models"))


def p50(client: httpx.Client, n: int = 150) -> float:
    body = {"texts": ["Shares in the bank fell after the profit warning."]}
    client.post("/v1/classify", json=body).raise_for_status()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        client.post("/v1/classify", json=body).raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    import ray
    from conftest import free_port
    from ray import serve

    from deployments.assemble import deploy, start_serve

    http_port, metrics_port, sidecar_port = free_port(), free_port(), free_port()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="error",
             _metrics_export_port=metrics_port)
    start_serve(config(True), "127.0.0.1", http_port, 0)
    results: dict[bool, list[float]] = {True: [], False: []}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=60) as client:
            for metrics in (True, False, True, False):
                deploy(config(metrics))
                results[metrics].append(p50(client))
                for app in serve.status().applications:
                    serve.delete(app)
            deploy(config(True))
            sidecar = subprocess.Popen([sys.executable, "-m", "serve_app.ops.sidecar", "--port", str(sidecar_port),
                                        "--gateway", f"http://127.0.0.1:{http_port}"])
            time.sleep(3)
            proc = psutil.Process(sidecar.pid)
            before, started = proc.cpu_times(), time.monotonic()
            for _ in range(30):
                httpx.get(f"http://127.0.0.1:{sidecar_port}/metrics").raise_for_status()
                time.sleep(1)
            after, elapsed = proc.cpu_times(), time.monotonic() - started
            sidecar_cpu = (after.user + after.system - before.user - before.system) / elapsed * 100
            sidecar.terminate()
    finally:
        serve.shutdown()
        ray.shutdown()
    on, off = statistics.median(results[True]), statistics.median(results[False])
    print(f"classify p50 with metrics  {on:6.1f} ms  (rounds {[round(x, 1) for x in results[True]]})")
    print(f"classify p50 without       {off:6.1f} ms  (rounds {[round(x, 1) for x in results[False]]})")
    print(f"metrics overhead: {on - off:+.1f} ms ({on / off:.3f}x)")
    print(f"sidecar CPU while scraped every second: {sidecar_cpu:.2f}% of one core")


if __name__ == "__main__":
    main()
