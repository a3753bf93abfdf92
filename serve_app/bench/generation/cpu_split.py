"""`python -m serve_app.bench.generation.cpu_split`: where the CPU goes while the gateway streams summaries at
concurrency 8, process by process (the evidence behind G2/P11: on 2 cores, every CPU-second the serving path
spends is one the engine does not get).

Starts a local Ray and a gateway serving the summarizer (as the generation bench does), runs one closed loop of
streamed /v1/summarize at concurrency 8, and reads every process' CPU time before and after: the engine (the
replica process and vLLM's engine core), Ray's proxy, the ingress, Ray's own daemons, this client. Prints a
table and writes --json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import psutil

from serve_app.bench.generation.clients import closed_loop, gateway_call
from serve_app.bench.generation.settings import GenSettings, gateway_config
from serve_app.bench.harness import free_port, local_ray, open_gateway_registry, start_gateway


def role(proc: psutil.Process) -> str:
    """A readable name for a process on this machine during the run."""
    try:
        name, cmd = proc.name(), " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "gone"
    if proc.pid == psutil.Process().pid:
        return "bench client (httpx, this process)"
    for key, label in (("ServeReplica:sum", "summarizer replica (vLLM frontend, token path)"),
                       ("ServeReplica:gateway", "ingress replica (SSE framing)"),
                       ("ProxyActor", "Ray's HTTP proxy"), ("ServeController", "Serve controller"),
                       ("EngineCore", "vLLM engine core (the model)"), ("VLLM::", "vLLM engine core (the model)"),
                       ("raylet", "raylet"), ("gcs_server", "GCS"), ("dashboard", "Ray dashboard/agents"),
                       ("agent", "Ray dashboard/agents"), ("log_monitor", "Ray log monitor")):
        if key in name or key in cmd:
            return label
    return f"other ({name})"


def cpu_times() -> dict[int, tuple[str, float]]:
    out = {}
    for proc in psutil.process_iter():
        try:
            t = proc.cpu_times()
            out[proc.pid] = (role(proc), t.user + t.system + t.children_user + t.children_system)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def split(before: dict, after: dict, seconds: float) -> dict[str, float]:
    """Cores used by each role over the run (CPU seconds ÷ wall seconds)."""
    used: dict[str, float] = {}
    for pid, (name, total) in after.items():
        start = before.get(pid, (name, 0.0))[1]
        used[name] = used.get(name, 0.0) + max(0.0, total - start) / seconds
    return dict(sorted(used.items(), key=lambda kv: -kv[1]))


async def run(base_url: str, texts: list[str], settings: GenSettings, requests: int) -> dict:
    import httpx

    async with httpx.AsyncClient(base_url=base_url, timeout=600) as http:
        one = gateway_call(http, "sum", settings.max_new_tokens)
        await one(texts[0])  # warm-up
        before, started = cpu_times(), time.perf_counter()
        result = await closed_loop(one, texts, settings.concurrency, requests)
        seconds = time.perf_counter() - started
        after = cpu_times()
    cores = split(before, after, seconds)
    return {"seconds": round(seconds, 1), "tokens_per_s": round(result.tokens_per_s, 1),
            "cores_by_role": {k: round(v, 3) for k, v in cores.items() if v >= 0.005},
            "cores_total": round(sum(cores.values()), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve_app.bench.generation.cpu_split")
    parser.add_argument("--model", default="summarizer@stable")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from serve_app.builders import bbc
    from serve_app.config import parse_config
    from serve_app.config.settings import GatewaySettings

    registry = open_gateway_registry(None)
    sum_dir = registry.pull(registry.resolve(args.model))
    settings = GenSettings()
    _, held_out = bbc.split(bbc.load_articles())
    config = parse_config(gateway_config(sum_dir, settings), settings=GatewaySettings())
    port = free_port()
    with local_ray(num_cpus=2):
        start_gateway(config, port, 0)
        out = asyncio.run(run(f"http://127.0.0.1:{port}", [a.text for a in held_out], settings, args.requests))
    out["model"] = args.model
    for name, cores in out["cores_by_role"].items():
        print(f"{cores:6.3f} cores  {name}")
    print(f"{out['cores_total']:6.3f} cores in all over {out['seconds']} s; {out['tokens_per_s']} tokens/s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
