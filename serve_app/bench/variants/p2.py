"""P2: the gateway serving the fastest variant that passed the serving gate ÷ the naive FastAPI fp32 server
(one request -> one torch forward pass), closed loops of 32 clients, one held-out BBC article per request cut
to 128 tokens, every answer checked. Each repeat runs the naive server's window, then the gateway's; the
ratio is taken per repeat and the median reported.

Run as its own process per HTTP front (`--front ray|haproxy`), because Ray reads the front from the
environment when it starts: `python -m serve_app.bench.variants.p2 FP32_DIR VARIANT_DIR --front haproxy`.
The gateway serves the variant as a user would configure it (configs/gateway.yaml's classifier shape, no
response cache), and the requests name it as the model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path

import httpx

from serve_app.bench.harness import deploy_gateway, listener, local_ray, naive_server, start_proxies_on_free_ports
from serve_app.bench.judge import ratio
from serve_app.bench.load import closed_loop
from serve_app.config.serve_env import use_fast_path

MAX_LENGTH = 128


def gateway_config(variant_dir: Path, front: str):
    from serve_app.config import parse_config
    from serve_app.config.settings import GatewaySettings

    return parse_config({
        "server": {"http_front": front},
        "models": [{"name": "fast", "task": "classification", "source": str(variant_dir), "max_length": MAX_LENGTH,
                    "resources": {"replicas": 1, "num_cpus": 0.4, "num_gpus": 0, "threads": 2},
                    "batching": {"max_batch_size": 16, "batch_wait_timeout_s": 0.0, "max_concurrent_batches": 2}}],
    }, settings=GatewaySettings())


async def measure(naive_url: str, gateway_url: str, texts: list[str], concurrency: int, window_s: float,
                  repeats: int, tick, model: str = "fast") -> dict:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=naive_url, timeout=120, limits=limits) as naive, \
            httpx.AsyncClient(base_url=gateway_url, timeout=120, limits=limits) as gateway:
        async def call_naive(n: int) -> None:
            r = await naive.post("/classify", json={"texts": [texts[n % len(texts)]]})
            assert r.status_code == 200 and r.json()["results"][0]["label"], r.text[:200]

        async def call_gateway(n: int) -> None:
            r = await gateway.post("/v1/classify", json={"texts": [texts[n % len(texts)]], "model": model},
                                   headers={"Cache-Control": "no-cache"})
            assert r.status_code == 200 and r.json()["results"][0]["label"], r.text[:200]

        for call in (call_naive, call_gateway):  # warm both: first calls pick kernels and open connections
            await asyncio.gather(*(call(i) for i in range(concurrency)))
        rounds = []
        for r in range(repeats):
            tick(f"P2 repeat {r + 1}/{repeats}: naive FastAPI fp32, then the gateway")
            alone = (await closed_loop(call_naive, concurrency, window_s)).as_dict()
            served = (await closed_loop(call_gateway, concurrency, window_s)).as_dict()
            rounds.append({"naive": alone, "gateway": served, "ratio": ratio(served["rps"], alone["rps"])})
    measured = [r["ratio"] for r in rounds]
    return {"concurrency": concurrency, "rounds": rounds,
            "ratio": statistics.median(measured) if None not in measured else None}


def run(fp32_dir: Path, variant_dir: Path, front: str, concurrency: int, window_s: float, repeats: int,
        tick=lambda s: None) -> dict:
    from serve_app.builders import bbc

    use_fast_path(http_front=front)
    _, held_out = bbc.split(bbc.load_articles())
    config = gateway_config(variant_dir, front)
    with naive_server(fp32_dir, MAX_LENGTH) as naive_url, local_ray(num_cpus=2):
        http_port, _ = start_proxies_on_free_ports(config)
        deploy_gateway(config)
        # Which process took the requests: with the haproxy front, HAProxy owns the port, Ray's proxy does not.
        answered_by = listener(http_port)
        out = asyncio.run(measure(naive_url, f"http://127.0.0.1:{http_port}", [a.text for a in held_out],
                                  concurrency, window_s, repeats, tick))
    return {"front": front, "listener": answered_by, **out}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve_app.bench.variants.p2")
    parser.add_argument("fp32_dir", type=Path)
    parser.add_argument("variant_dir", type=Path)
    parser.add_argument("--front", choices=["ray", "haproxy"], default="ray")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the result here as JSON")
    args = parser.parse_args(argv)
    result = run(args.fp32_dir, args.variant_dir, args.front, args.concurrency, args.window, args.repeats,
                 lambda s: print(s, file=sys.stderr, flush=True))
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(f"P2 ({args.front} front): {result['ratio']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
