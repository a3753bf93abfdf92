"""p50 latency of each built-in pipeline with the real models, and of a 3-way no-op fan-out vs one no-op call,
measured side by side in one run on this machine (CPU). Run after `make models`:

    .venv/bin/python scripts/pipeline_latency.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import httpx  # noqa: E402
import yaml  # noqa: E402

from serve_app.config import parse_config  # noqa: E402
from serve_app.builders import bbc  # noqa: E402
from serve_app.config.settings import GatewaySettings  # noqa: E402

NOOP = {"type": "model", "model": "noop"}


def p50(client: httpx.Client, path: str, body: dict, n: int) -> float:
    client.post(path, json=body).raise_for_status()  # warm-up
    times = []
    for _ in range(n):
        started = time.perf_counter()
        client.post(path, json=body).raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    import ray
    from conftest import free_port
    from ray import serve

    from deployments.assemble import deploy

    raw = yaml.safe_load((REPO / "configs" / "gateway.yaml").read_text())
    raw["models"].append({"name": "noop", "task": "identity", "resources": {"num_cpus": 0.05, "num_gpus": 0}})
    raw["pipelines"] += [
        {"name": "noop_single", "graph": NOOP},
        {"name": "noop_fanout3", "graph": {"type": "fanout", "branches": {"a": NOOP, "b": NOOP, "c": NOOP}}},
    ]
    config = parse_config(raw, settings=GatewaySettings(models_dir=REPO / "models", num_gpus=0))
    _, held_out = bbc.split(bbc.load_articles())
    article = held_out[0].text
    long_doc = " ".join(a.text for a in held_out[:2])
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="error")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        deploy(config)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as c:
            single = p50(c, "/v1/pipelines/noop_single", {"texts": ["x"]}, 200)
            fan = p50(c, "/v1/pipelines/noop_fanout3", {"texts": ["x"]}, 200)
            rows = [
                ("noop single call (pipeline)", single),
                ("noop 3-way fan-out", fan),
                ("classify_ensemble (1 article)", p50(c, "/v1/pipelines/classify_ensemble", {"texts": [article]}, 20)),
                ("summarize_then_classify (1 article)",
                 p50(c, "/v1/pipelines/summarize_then_classify", {"texts": [article]}, 5)),
                (f"long_document_summary ({len(long_doc)} chars)",
                 p50(c, "/v1/pipelines/long_document_summary", {"texts": [long_doc]}, 3)),
            ]
    finally:
        serve.shutdown()
        ray.shutdown()
    for name, ms in rows:
        print(f"{name:<45} p50 {ms:9.1f} ms")
    print(f"3-way no-op fan-out / single no-op call: {fan / single:.2f}x")


if __name__ == "__main__":
    main()
