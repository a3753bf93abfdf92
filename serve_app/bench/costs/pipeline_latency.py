"""p50 latency of each built-in pipeline with the real models, and of a 3-way no-op fan-out vs one no-op call,
measured side by side in one run on this machine (CPU). Run after `make models`:

    .venv/bin/python -m serve_app.bench.costs.pipeline_latency
"""

from __future__ import annotations

import httpx
import yaml

from serve_app.bench.harness import REPO, deploy_gateway, free_port, local_ray, p50_ms
from serve_app.builders import bbc
from serve_app.config import parse_config
from serve_app.config.serve_env import use_fast_path
from serve_app.config.settings import GatewaySettings

NOOP = {"type": "model", "model": "noop"}


def p50(client: httpx.Client, path: str, body: dict, n: int) -> float:
    return p50_ms(lambda: client.post(path, json=body).raise_for_status(), n)


def gateway_config():
    """configs/gateway.yaml with a no-op model, a single no-op call and a 3-way no-op fan-out added."""
    raw = yaml.safe_load((REPO / "configs" / "gateway.yaml").read_text())
    raw["models"].append({"name": "noop", "task": "identity", "resources": {"num_cpus": 0.05, "num_gpus": 0}})
    raw["pipelines"] += [
        {"name": "noop_single", "graph": NOOP},
        {"name": "noop_fanout3", "graph": {"type": "fanout", "branches": {"a": NOOP, "b": NOOP, "c": NOOP}}},
    ]
    return parse_config(raw, settings=GatewaySettings(models_dir=REPO / "models", num_gpus=0))


def main() -> None:
    use_fast_path()
    config = gateway_config()
    _, held_out = bbc.split(bbc.load_articles())
    article = held_out[0].text
    long_doc = " ".join(a.text for a in held_out[:2])
    with local_ray(num_cpus=2):
        from ray import serve

        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        deploy_gateway(config)
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
    for name, ms in rows:
        print(f"{name:<45} p50 {ms:9.1f} ms")
    print(f"3-way no-op fan-out / single no-op call: {fan / single:.2f}x")


if __name__ == "__main__":
    main()
