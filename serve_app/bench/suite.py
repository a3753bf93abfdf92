"""The measurements behind `make bench`, against a running gateway (Ray Serve), a naive server and the raw
model in this process. Every target is measured in the same run, interleaved (each repeat walks every
concurrency and every target in turn), and ratios are taken per repeat and then their median is reported."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import httpx
import numpy as np

from serve_app.bench import generation
from serve_app.bench.generation import GenSettings
from serve_app.bench.judge import GE, LE, failures, judge, ratio
from serve_app.bench.load import Call, closed_loop
from serve_app.bench.raw import RawBatcher, best_raw_layout

NOOP = {"type": "model", "model": "noop"}


@dataclass
class BenchSettings:
    concurrencies: list[int] = field(default_factory=lambda: [1, 4, 16, 32, 64])
    # 10 s windows: at concurrency 32 the classifier forms batches of 16 at ~2 per second here, so every sample
    # spans 20 or more batches (5 s windows held as few as 3 of raw's batches of 64); medians of 5 repeats.
    window_s: float = 10.0
    repeats: int = 5
    hop_depths: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    hop_requests: int = 100
    # P5, P10, P11: the generation bench's settings and measurement (serve_app/bench/generation.py)
    generation: GenSettings = field(default_factory=GenSettings)
    max_length: int = 128
    ratio_concurrency: int = 32  # P1 and the peer ratios are read here

    @classmethod
    def smoke(cls) -> BenchSettings:
        return cls(concurrencies=[1, 4], window_s=0.5, repeats=1, hop_depths=[1, 2, 3], hop_requests=10,
                   generation=GenSettings.smoke(), ratio_concurrency=4)


def bench_models(classifier: dict, summarizer: dict, settings: BenchSettings) -> dict:
    """Models and pipelines of the gateway under test; each source dict is `source:` or `version:` (+registry)."""
    # The shape configs/gateway.yaml ships: one replica, two torch threads for a lone batch, two batches side by
    # side (one thread each) under load, no batch window.
    resources = {"replicas": 1, "num_cpus": 0.4, "num_gpus": 0, "threads": 2}
    clf = {"task": "classification", "max_length": settings.max_length, "resources": resources,
           "batching": {"max_batch_size": 16, "batch_wait_timeout_s": 0.0, "max_concurrent_batches": 2}}
    chains = [{"name": f"hops{d}", "graph": NOOP if d == 1 else
               {"type": "chain", "steps": [{"node": NOOP} for _ in range(d)]}} for d in settings.hop_depths]
    return {
        "models": [
            {"name": "clf", **clf, **classifier},
            generation.generation_model(summarizer, settings.generation),
            {"name": "noop", "task": "identity", "resources": {"num_cpus": 0.05, "num_gpus": 0},
             "batching": {"max_batch_size": 64, "batch_wait_timeout_s": 0.0}},
        ],
        "pipelines": [*chains,
                      {"name": "fanout3", "graph": {"type": "fanout", "branches": {"a": NOOP, "b": NOOP, "c": NOOP}}}],
    }


def _check(r: httpx.Response) -> httpx.Response:
    if r.status_code != 200:
        raise RuntimeError(f"{r.status_code}: {r.text[:200]}")
    return r


class WrongAnswer(AssertionError):
    """An answer whose label differs from the one the same model gives in process (counted as an error)."""


def label_check(texts: list[str], expected: dict[str, str]) -> Callable[[int, object], None]:
    """check(n, label): raises WrongAnswer unless request n's label is present and (where known) the expected one."""
    def check(n: int, label) -> None:
        if isinstance(label, bytes):
            label = label.decode()
        want = expected.get(texts[n % len(texts)])
        if not label or (want is not None and label != want):
            raise WrongAnswer(f"text {n % len(texts)}: got {label!r}, the model in process says {want!r}")
    return check


def classify_targets(texts: list[str], http: httpx.AsyncClient, naive: httpx.AsyncClient, grpc_client,
                     raw: RawBatcher, peers: dict[str, httpx.AsyncClient] | None = None,
                     expected: dict[str, str] | None = None) -> dict[str, Call]:
    """One text per request; every answer's label is checked against `expected` (the label the same model gives
    that text in process, computed before the run), else only for presence. A wrong label counts as an error,
    and a run with errors measures no target (judge.py)."""
    import tritonclient.grpc.aio as tgrpc

    def pick(n: int) -> str:
        return texts[n % len(texts)]

    check = label_check(texts, expected or {})

    async def gateway(n: int, model: str = "clf") -> None:
        r = _check(await http.post("/v1/classify", json={"texts": [pick(n)], "model": model}))
        check(n, r.json()["results"][0]["label"])

    async def oip_rest(n: int) -> None:
        body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [pick(n)]}]}
        r = _check(await http.post("/v2/models/clf/infer", json=body))
        check(n, next(o["data"][0] for o in r.json()["outputs"] if o["name"] == "label"))

    async def oip_grpc(n: int) -> None:
        inp = tgrpc.InferInput("text", [1], "BYTES")
        inp.set_data_from_numpy(np.array([pick(n).encode()], dtype=np.object_))
        # The plain Ray Serve peer is a second Serve application: Ray's gRPC proxy then needs the target named.
        result = await grpc_client.infer("clf", [inp], headers={"application": "gateway"})
        check(n, result.as_numpy("label")[0])

    async def naive_server(n: int) -> None:
        r = _check(await naive.post("/classify", json={"texts": [pick(n)]}))
        check(n, r.json()["results"][0]["label"])

    async def raw_model(n: int) -> None:
        check(n, (await raw.submit(pick(n)))["label"])

    def peer(client: httpx.AsyncClient) -> Call:
        async def call(n: int) -> None:
            r = _check(await client.post("predict", json={"text": pick(n)}))
            check(n, r.json()["label"])

        return call

    return {"raw in-process": raw_model, "gateway HTTP": gateway, "gateway OIP REST": oip_rest,
            "gateway OIP gRPC": oip_grpc,
            "naive FastAPI": naive_server, **{name: peer(client) for name, client in (peers or {}).items()}}


async def sweep(targets: dict[str, Call], settings: BenchSettings, tick: Callable[[str], None]) -> dict:
    """results[target][concurrency] = list of samples, one per repeat."""
    results: dict[str, dict[int, list[dict]]] = {t: {c: [] for c in settings.concurrencies} for t in targets}
    for r in range(settings.repeats):
        for c in settings.concurrencies:
            for name, call in targets.items():
                tick(f"repeat {r + 1}/{settings.repeats}, concurrency {c}: {name}")
                sample = await closed_loop(call, c, settings.window_s)
                results[name][c].append(sample.as_dict())
    return results


async def sequential_p50(call: Call, n: int) -> float:
    await call(0)  # warm-up
    times = []
    for i in range(n):
        started = time.perf_counter()
        await call(i)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def hops(http: httpx.AsyncClient, settings: BenchSettings, tick) -> dict:
    """p50 of no-op chains by depth, and the 3-way fan-out against one no-op, per repeat."""
    async def pipeline(name: str, n: int) -> None:
        _check(await http.post(f"/v1/pipelines/{name}", json={"texts": [f"t{n}"]}))

    depth_p50: dict[int, list[float]] = {d: [] for d in settings.hop_depths}
    fan: list[float] = []
    for r in range(settings.repeats):
        tick(f"hops, repeat {r + 1}/{settings.repeats}")
        for d in settings.hop_depths:
            depth_p50[d].append(await sequential_p50(lambda n, d=d: pipeline(f"hops{d}", n), settings.hop_requests))
        single = await sequential_p50(lambda n: pipeline("hops1", n), settings.hop_requests)
        three = await sequential_p50(lambda n: pipeline("fanout3", n), settings.hop_requests)
        fan.append(three / single)
    per_hop = [float(np.polyfit(settings.hop_depths, [depth_p50[d][r] for d in settings.hop_depths], 1)[0])
               for r in range(settings.repeats)]
    return {"p50_ms_by_depth": {d: statistics.median(v) for d, v in depth_p50.items()},
            "ms_per_hop": statistics.median(per_hop), "fanout3_over_single": statistics.median(fan),
            "ms_per_hop_repeats": per_hop, "fanout3_repeats": fan}


def targets_table(sweep_results: dict, hop: dict, gen_rows: list[dict], settings: BenchSettings) -> list[dict]:
    """P1-P11 as measured: per-repeat ratios, then the median with its spread (P5, P10, P11 from the generation
    bench). A ratio is measured only where both of its runs answered every request, checked (judge.py)."""
    c = settings.ratio_concurrency
    one = min(settings.concurrencies)

    def samples(name: str, conc: int) -> list[dict]:
        return sweep_results.get(name, {}).get(conc, [])

    def ratio_row(tid: str, measure: str, a: str, b: str, op: str, target: float) -> dict:
        xs, ys = samples(a, c), samples(b, c)
        values = [ratio(x["rps"], y["rps"]) for x, y in zip(xs, ys)] or [None]
        return judge(tid, measure, values, op, target, failures(xs, a) + failures(ys, b))

    def gap_row(tid: str, measure: str, a: str, b: str, op: str, target: float) -> dict:
        xs, ys = samples(a, one), samples(b, one)
        values = [x["p50_ms"] - y["p50_ms"] for x, y in zip(xs, ys)] or [None]
        return judge(tid, measure, values, op, target, failures(xs, a) + failures(ys, b))

    rows = [
        ratio_row("P1", f"gateway classify req/s ÷ raw in-process batched req/s, concurrency {c}",
                  "gateway HTTP", "raw in-process", GE, 0.90),
        ratio_row("P1-rest", f"gateway OIP REST req/s ÷ raw in-process batched, concurrency {c}",
                  "gateway OIP REST", "raw in-process", GE, 0.90),
        ratio_row("P1-grpc", f"gateway OIP gRPC req/s ÷ raw in-process batched, concurrency {c}",
                  "gateway OIP gRPC", "raw in-process", GE, 0.90),
        judge("P3", "added p50 per extra no-op hop (ms)", hop.get("ms_per_hop_repeats", [hop.get("ms_per_hop")]),
              LE, 2.0),
    ]
    rest = [
        judge("P6", "3-way no-op fan-out p50 ÷ single no-op p50",
              hop.get("fanout3_repeats", [hop.get("fanout3_over_single")]), LE, 1.3),
        gap_row("P9", "p50 at concurrency 1: gateway − raw, one classify over HTTP (ms)",
                "gateway HTTP", "raw in-process", LE, 8.0),
    ]
    for peer, tag, wanted in (("LitServe", "P7-litserve", 1.0), ("plain Ray Serve", "P7-rayserve", 1.1)):
        if peer in sweep_results:
            rest.append(ratio_row(tag, f"gateway classify req/s ÷ {peer}, concurrency {c}", "gateway HTTP", peer,
                                  GE, wanted))
    return rows + generation.targets(gen_rows) + rest


async def run_suite(base_url: str, grpc_target: str, naive_url: str, raw_predict, texts: list[str],
                    settings: BenchSettings, sum_dir, tick: Callable[[str], None] = lambda s: None,
                    peers: dict[str, str] | None = None) -> dict:
    """`peers`: name -> base URL of a peer server answering POST predict (see bench/peers.py); `sum_dir`: the
    folder of the summarizer the gateway serves as `sum`, loaded again in-process for P11."""
    import tritonclient.grpc.aio as tgrpc

    from serve_app.bench.peer_model import CONFIG as PEER_CONFIG

    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    raw = None
    grpc_client = tgrpc.InferenceServerClient(grpc_target)
    async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as http, \
            httpx.AsyncClient(base_url=naive_url, timeout=600, limits=limits) as naive:
        peer_clients = {name: httpx.AsyncClient(base_url=url.rstrip("/") + "/", timeout=600, limits=limits)
                        for name, url in (peers or {}).items()}
        try:
            tick("reference labels: the model in process, every text")
            reference = await asyncio.to_thread(raw_predict, texts)
            expected = {t: r["label"] for t, r in zip(texts, reference, strict=True)}

            def raw_call(batcher: RawBatcher) -> Call:
                return classify_targets(texts, http, naive, grpc_client, batcher, {}, expected)["raw in-process"]

            # The baseline P1 divides by: the fastest layout of the model in this process, measured now.
            raw, raw_layouts = await best_raw_layout(raw_predict, raw_call, settings.ratio_concurrency,
                                                     settings.window_s, tick)
            targets = classify_targets(texts, http, naive, grpc_client, raw, peer_clients, expected)
            for call in targets.values():  # warm every path (first calls load kernels, open connections)
                await call(0)
            results = await sweep(targets, settings, tick)
            hop = await hops(http, settings, tick)
        finally:
            if raw is not None:
                await raw.close()
            await grpc_client.close()
            for client in peer_clients.values():
                await client.aclose()
    gen_error = None
    try:
        gen_rows = await generation.measure(sum_dir, texts, settings.generation, base_url,
                                            lambda step: tick(f"generation: {step}"))
    except Exception as err:  # noqa: BLE001 - a failed generation run is reported; the classifier figures stay
        gen_rows, gen_error = [], f"{type(err).__name__}: {err}"
    servers = {"raw in-process": raw_layouts,
               **{name: PEER_CONFIG[name] for name in peers or {} if name in PEER_CONFIG}}
    return {"settings": asdict(settings), "servers": servers, "sweep": results, "hops": hop,
            "generation": {"settings": asdict(settings.generation), "repeats": gen_rows, "error": gen_error},
            "targets": targets_table(results, hop, gen_rows, settings)}


def run(base_url: str, grpc_target: str, naive_url: str, raw_predict, texts: list[str], settings: BenchSettings,
        sum_dir, tick: Callable[[str], None] = lambda s: None, peers: dict[str, str] | None = None) -> dict:
    return asyncio.run(run_suite(base_url, grpc_target, naive_url, raw_predict, texts, settings, sum_dir, tick,
                                 peers))
