"""`python -m serve_app.bench.traffic` (part of `make bench`): T2 (shadow traffic) and T3 (priorities).

The prepared classifier, registered twice in a scratch registry (its files, and a copy with a marker file: two
versions of equal answers), served as `make bench` serves it; every primary answer is checked against the label
the model gives in process.

T2: primary p50 at concurrency 8 with 100% of calls mirrored to version 2 ÷ without a mirror, the two alternating
within each repeat (order swapped every repeat). T3: p99 of a high-priority client (one call at a time) while
low-priority calls arrive at 4× the model's capacity ÷ its p99 alone (the high client is a process of its own,
as an interactive user is); the low class must be shed (429) and the high class must never fail. Every client runs
at the gateway's OS niceness (Ray's workers run at 15): on the 2 cores it shares with the server, a client at
nice 0 would take the CPU first, as no client on another machine does.

Both behind each HTTP front, a fresh process (and Ray) each, as P2: T2 and T3 behind HAProxy (the front for
load: no Python proxy per request), T2-ray-front and T3-ray-front behind Ray's proxy (the default). Results:
docs/bench/traffic.json, merged by id into bench.json. ~12 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import aiohttp
import httpx

from serve_app.bench import report
from serve_app.bench.harness import deploy_gateway, listener, local_ray, progress_ticker, start_proxies_on_free_ports
from serve_app.bench.judge import LE, failures, judge, ratio
from serve_app.bench.load import closed_loop, closed_loop_blocking
from serve_app.bench.suite import label_check
from serve_app.config.serve_env import use_fast_path

OVERLOAD = 4.0


def config(work: Path, front: str = "ray"):
    from serve_app.config import parse_config
    from serve_app.config.settings import GatewaySettings

    return parse_config({
        "server": {"http_front": front},
        "registry": {"uri": str(work / "store"), "cache_dir": str(work / "cache")},
        "models": [{"name": "clf", "task": "classification", "version": "1", "max_length": 128,
                    "resources": {"replicas": 1, "num_cpus": 0.4, "num_gpus": 0, "threads": 2,
                                  "max_queue_wait_s": 0.5},
                    "batching": {"max_batch_size": 16, "batch_wait_timeout_s": 0.0, "max_concurrent_batches": 2}}],
    }, settings=GatewaySettings(models_dir=work))


def register_two(clf_dir: Path, work: Path) -> None:
    from serve_app.registry import Registry

    registry = Registry(str(work / "store"), cache_dir=work / "cache")
    registry.register("clf", clf_dir)
    copy = work / "copy"
    shutil.copytree(clf_dir, copy)
    (copy / "SHADOW.txt").write_text("a second version of the prepared classifier (T2 bench)\n")
    registry.register("clf", copy)


def caller(http: httpx.AsyncClient, texts: list[str], check):
    async def call(n: int) -> None:
        r = await http.post("/v1/classify", json={"texts": [texts[n % len(texts)]], "model": "clf"})
        if r.status_code != 200 or r.headers.get("x-model-version") != "1":
            raise RuntimeError(f"{r.status_code} (version {r.headers.get('x-model-version')}): {r.text[:200]}")
        check(n, r.json()["results"][0]["label"])
    return call


async def t2(http: httpx.AsyncClient, call, repeats: int, window_s: float, tick) -> dict:
    rounds = []
    for repeat in range(repeats):
        row = {}
        for mode in (("off", "on") if repeat % 2 == 0 else ("on", "off")):
            tick(f"T2 repeat {repeat + 1}/{repeats}: shadow {mode}")
            body = {"version": "2", "share": 1.0} if mode == "on" else {}
            (await http.put("/v1/admin/models/clf/shadow", json=body)).raise_for_status()
            await closed_loop(call, 8, 2.0)  # warm-up
            row[mode] = (await closed_loop(call, 8, window_s)).as_dict()
            if mode == "on":  # what the mirror did in this window
                row["mirror"] = (await http.get("/v1/models/clf")).json().get("shadow")
        rounds.append(row)
    (await http.put("/v1/admin/models/clf/shadow", json={})).raise_for_status()
    return {"concurrency": 8, "window_s": window_s, "rounds": rounds}


async def low_load(url: str, texts: list[str], rate: float, seconds: float) -> Counter:
    """Low-priority calls sent at `rate` per second whatever the answers (open loop); their statuses. aiohttp, not
    httpx: at 4x capacity httpx's own per-call CPU would take a core of this 2-core machine from the gateway."""
    statuses: Counter = Counter()

    async def one(session: aiohttp.ClientSession, n: int) -> None:
        try:
            async with session.post(f"{url}/v1/classify", json={"texts": [texts[n % len(texts)]], "model": "clf"},
                                    headers={"x-priority": "low"}) as r:
                await r.read()
                statuses[r.status] += 1
        except (TimeoutError, aiohttp.ClientError) as err:
            statuses[type(err).__name__] += 1

    loop, tasks = asyncio.get_running_loop(), []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:
        started = loop.time()
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, started + n / rate - loop.time()))
            tasks.append(asyncio.ensure_future(one(session, n)))
        await asyncio.gather(*tasks)
    return statuses


def gateway_niceness() -> int:
    """The OS niceness of the gateway's ingress replica: Ray starts its workers at 15 (RAY_worker_niceness)."""
    import psutil  # Ray's own dependency

    for proc in psutil.process_iter(["cmdline"]):
        if "ServeReplica:gateway" in " ".join(proc.info["cmdline"] or []):
            return proc.nice()
    raise RuntimeError("no gateway replica found")


def at_niceness(nice: int) -> None:
    """Run the calling thread, a client, at the gateway's niceness: sharing 2 cores with the server it measures, a
    client at nice 0 would outrank every Ray process (nice 15) about 28 to 1 for the CPU, which no remote client
    does. (Linux's niceness is per thread: the driver's Ray threads keep theirs.)"""
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


_HIGH: dict = {}  # the high client's process: its connection, made on first use


def high_window(url: str, texts: list[str], expected: dict[str, str], window_s: float, nice: int) -> dict:
    """One window of the high class, one call at a time, run in a process of its own: an interactive client with
    its own interpreter, so what it measures is the gateway, not a GIL shared with the bulk load generator (which
    keeps a core busy sending its calls)."""
    if _HIGH.get("url") != url:
        at_niceness(nice)
        _HIGH.update(url=url, http=httpx.Client(base_url=url, timeout=120))
    http, check = _HIGH["http"], label_check(texts, expected)

    def call(n: int) -> None:
        r = http.post("/v1/classify", json={"texts": [texts[n % len(texts)]], "model": "clf"},
                      headers={"x-priority": "high"})
        if r.status_code != 200 or r.headers.get("x-model-version") != "1":
            raise RuntimeError(f"{r.status_code}: {r.text[:200]}")
        check(n, r.json()["results"][0]["label"])
    return closed_loop_blocking(call, 1, window_s).as_dict()


async def t3(http: httpx.AsyncClient, texts: list[str], high, normal, repeats: int, window_s: float, tick) -> dict:
    """`high(window_s)`: one window of the high client (its own process), awaited."""
    tick("T3: capacity (concurrency 32)")
    url = str(http.base_url).rstrip("/")
    capacity = (await closed_loop(normal, 32, window_s)).rps
    rounds = []
    for repeat in range(repeats):
        tick(f"T3 repeat {repeat + 1}/{repeats}: the high class alone, then under {OVERLOAD:g}x overload")
        alone = await high(window_s)
        low = asyncio.ensure_future(low_load(url, texts, OVERLOAD * capacity, window_s + 2))
        await asyncio.sleep(2.0)  # the overload builds up first
        loaded = await high(window_s)
        rounds.append({"alone": alone, "loaded": loaded, "low_statuses": dict(await low)})
    return {"capacity_rps": capacity, "low_rate_rps": round(OVERLOAD * capacity, 1), "window_s": window_s,
            "high_client": "one call at a time from a process of its own (interpreter, connection)",
            "rounds": rounds}


def rows(run: dict, suffix: str = "") -> list[dict]:
    """T2 and T3 of one front's run; `suffix` tags the ids of the run behind the other front ("-ray-front")."""
    shadow, prio = run["t2"]["rounds"], run["t3"]["rounds"]
    t2_problems = [*failures([r["off"] for r in shadow], "no shadow"), *failures([r["on"] for r in shadow], "shadow"),
                   *(["the mirror compared no answers"] if not all((r.get("mirror") or {}).get("agreed") for r in
                                                                  shadow) else [])]
    t3_problems = [*failures([r["alone"] for r in prio], "high class alone"),
                   *failures([r["loaded"] for r in prio], "high class under overload")]
    low = Counter()
    for r in prio:
        low.update(r["low_statuses"])
    if run.get("front") == "haproxy" and run.get("listener") != "haproxy":
        proof = f"the HAProxy front was not proven: the port was held by {run.get('listener')!r}"
        t2_problems.append(proof)
        t3_problems.append(proof)
    if not low.get("429") and not low.get(429):
        t3_problems.append("no low-priority call was shed: the gateway was not overloaded")
    odd = {k: v for k, v in low.items() if str(k) not in ("200", "429")}
    if odd:
        t3_problems.append(f"low-priority calls ended otherwise than answered or shed: {odd}")
    return [
        judge(f"T2{suffix}", f"{front_name(run)}primary p50 at concurrency 8 with 100% of calls mirrored to another "
              "version ÷ without",
              [ratio(r["on"]["p50_ms"], r["off"]["p50_ms"]) for r in shadow], LE, 1.10, t2_problems),
        judge(f"T3{suffix}", f"{front_name(run)}p99 of the high class (one call at a time) while low-priority "
              f"calls arrive at {OVERLOAD:g}× "
              f"capacity ({run['t3']['low_rate_rps']:g}/s) ÷ its p99 alone",
              [ratio(r["loaded"]["p99_ms"], r["alone"]["p99_ms"]) for r in prio], LE, 2, t3_problems),
    ]


def front_name(run: dict) -> str:
    return f"({run['front']} HTTP front) " if run.get("front") else ""


async def measure_async(url: str, texts: list[str], expected: dict[str, str], repeats: int, window_s: float,
                        tick) -> dict:
    check = label_check(texts, expected)
    nice = gateway_niceness()
    at_niceness(nice)  # this thread runs every client but the high one (which does the same in its process)
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        (await http.post("/v1/admin/models/clf/versions/2/load")).raise_for_status()  # weight 0: the shadow
        normal = caller(http, texts, check)
        run = {"t2": await t2(http, normal, repeats, window_s, tick)}
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            loop = asyncio.get_running_loop()

            def high(seconds: float):
                return loop.run_in_executor(pool, high_window, url, texts, expected, seconds, nice)
            run["t3"] = await t3(http, texts, high, normal, repeats, window_s, tick)
    return {"client_niceness": nice, **run}


def measure(front: str, repeats: int, window_s: float, tick) -> dict:
    from serve_app.bench.harness import open_gateway_registry
    from serve_app.runtime.classifier import load_classifier

    registry = open_gateway_registry(None)
    clf_dir = registry.pull(registry.resolve("classifier@stable"))
    from serve_app.builders import bbc

    _, held_out = bbc.split(bbc.load_articles())
    texts = [a.text for a in held_out][:256]
    tick("reference labels, the model in process")
    expected = {t: r["label"] for t, r in zip(texts, load_classifier(clf_dir, 128).predict(texts, 32), strict=True)}
    with tempfile.TemporaryDirectory(prefix="gateway-traffic-") as tmp, local_ray(num_cpus=2):
        work = Path(tmp)
        register_two(clf_dir, work)
        http_port, _ = start_proxies_on_free_ports(config(work, front))
        deploy_gateway(config(work, front))
        run = asyncio.run(measure_async(f"http://127.0.0.1:{http_port}", texts, expected, repeats, window_s, tick))
        return {"front": front, "listener": listener(http_port), **run}


FRONTS = (("haproxy", ""), ("ray", "-ray-front"))  # as P2: the front for load first, the default beside it


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve_app.bench.traffic", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--front", choices=[f for f, _ in FRONTS], help="one front only, in this process, its "
                        "run as JSON on stdout's last line (what the full step runs per front)")
    args = parser.parse_args(argv)
    if args.front:
        use_fast_path(http_front=args.front)  # before Ray starts: Ray reads the front when it starts
        from rich.console import Console

        with progress_ticker(f"traffic (T2, T3; {args.front} front)", console=Console(stderr=True)) as tick:
            print(json.dumps(measure(args.front, args.repeats, args.window, tick), default=str))
        return 0
    runs, targets = {}, []
    for front, suffix in FRONTS:  # a fresh process (and Ray) per front
        done = subprocess.run([sys.executable, "-m", "serve_app.bench.traffic", "--front", front, "--repeats",
                               str(args.repeats), "--window", str(args.window)], stdout=subprocess.PIPE, text=True,
                              check=True)
        runs[front] = json.loads(done.stdout.strip().splitlines()[-1])
        targets += rows(runs[front], suffix)
    (args.out / "traffic.json").write_text(json.dumps({"runs": runs, "targets": targets}, indent=2) + "\n")
    report.merge_step(args.out, "traffic", targets)
    for row in targets:
        print(f"{row['id']}: {row['value']} (target {row['target']}) {row['status']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
