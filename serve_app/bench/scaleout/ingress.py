"""S4: throughput at concurrency 32 with two ingress replicas ÷ with one, on this machine, the prepared classifier
served as `make bench` serves it (bench/suite.py's shape). The two layouts alternate within each repeat (order
swapped every repeat), each after its replicas all answered and a warm-up; every answer's label is checked
against the label the model gives that text in process."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from serve_app.bench.harness import deploy_gateway, local_ray, start_proxies_on_free_ports
from serve_app.bench.judge import GE, failures, judge, ratio
from serve_app.bench.load import closed_loop
from serve_app.bench.suite import label_check


def config(clf_dir: Path, ingress_replicas: int):
    from serve_app.config import parse_config
    from serve_app.config.settings import GatewaySettings

    return parse_config({
        "server": {"ingress_replicas": ingress_replicas},
        "models": [{"name": "clf", "task": "classification", "source": str(clf_dir), "max_length": 128,
                    "resources": {"replicas": 1, "num_cpus": 0.4, "num_gpus": 0, "threads": 2},
                    "batching": {"max_batch_size": 16, "batch_wait_timeout_s": 0.0, "max_concurrent_batches": 2}}],
    }, settings=GatewaySettings())


def settled(n: int, within_s: float = 180) -> None:
    """Until the ingress deployment runs exactly `n` replicas and nothing else (a redeploy replaces them)."""
    from ray import serve

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        app = serve.status().applications.get("gateway")
        replicas = app.deployments["gateway"].replica_states if app else {}
        states = {getattr(k, "value", k): v for k, v in replicas.items()}
        if app is not None and getattr(app.status, "value", app.status) == "RUNNING" and states == {"RUNNING": n}:
            return
        time.sleep(0.5)
    raise TimeoutError(f"the ingress did not settle at {n} replicas: {states}")


async def windows(url: str, clf_dir: Path, texts: list[str], expected: dict[str, str], repeats: int,
                  window_s: float, tick) -> list[dict]:
    check = label_check(texts, expected)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    out = []
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        async def call(n: int) -> None:
            r = await http.post("/v1/classify", json={"texts": [texts[n % len(texts)]], "model": "clf"})
            if r.status_code != 200:
                raise RuntimeError(f"{r.status_code}: {r.text[:200]}")
            check(n, r.json()["results"][0]["label"])

        for repeat in range(repeats):
            row = {}
            for n in ((1, 2) if repeat % 2 == 0 else (2, 1)):
                tick(f"S4 repeat {repeat + 1}/{repeats}: {n} ingress replica(s)")
                await asyncio.to_thread(deploy_gateway, config(clf_dir, n))
                await asyncio.to_thread(settled, n)
                await closed_loop(call, 32, 2.0)  # warm-up: connections, the new replicas' first batches
                row[f"ingress_{n}"] = (await closed_loop(call, 32, window_s)).as_dict()
            out.append(row)
    return out


def measure(clf_dir: Path, texts: list[str], repeats: int, window_s: float, tick) -> dict:
    from serve_app.runtime.classifier import load_classifier

    tick("S4: reference labels, the model in process")
    expected = {t: r["label"] for t, r in zip(texts, load_classifier(clf_dir, 128).predict(texts, 32), strict=True)}
    with local_ray(num_cpus=2):
        http_port, _ = start_proxies_on_free_ports(config(clf_dir, 1))
        rounds = asyncio.run(windows(f"http://127.0.0.1:{http_port}", clf_dir, texts, expected, repeats, window_s,
                                     tick))
    return {"concurrency": 32, "window_s": window_s, "rounds": rounds}


def s4_row(run: dict) -> dict:
    rounds = run["rounds"]
    problems = [*failures([r["ingress_1"] for r in rounds], "1 ingress replica"),
                *failures([r["ingress_2"] for r in rounds], "2 ingress replicas")]
    return judge("S4", "throughput at concurrency 32 with 2 ingress replicas ÷ with 1 (one machine, the classifier)",
                 [ratio(r["ingress_2"]["rps"], r["ingress_1"]["rps"]) for r in rounds], GE, 0.95, problems)
