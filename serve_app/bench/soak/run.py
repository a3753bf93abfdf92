"""`run_soak`: drive a running gateway for a soak's length and report; `passed` is its verdict."""

from __future__ import annotations

import sys

import httpx

from serve_app.bench.soak.load import Stream, measure_capacity, measure_mixed_capacity
from serve_app.bench.soak.memory import RssSampler, ray_processes, rss_report
from serve_app.bench.soak.targets import TEXTS, Target, call, reference_key
from serve_app.bench.stats import percentile

RSS_GROWTH_LIMIT_PCT = 5.0


def progress(message: str) -> None:
    """Progress goes to stderr, unbuffered, so a 10-minute run shows it while the report goes to stdout."""
    print(message, file=sys.stderr, flush=True)


def references(client: httpx.Client, target: Target) -> dict:
    """The answer each input must get (per kind of call in a mixed soak), from one call each before the load."""
    reference = {}
    for i in range(len(TEXTS) * len(getattr(target, "kinds", [None]))):
        text = TEXTS[i % len(TEXTS)]
        answer, _, status = call(client, target, text, i)
        if status != 200:
            raise RuntimeError(f"warm-up call failed with {status}: is {target.model} served at {target.base_url}?")
        reference[reference_key(target, text, i)] = answer
    if target.task == "identity":
        assert all(reference[(t,)] == t for t in TEXTS), "the identity model must echo its input"
    return reference


def measure(client: httpx.Client, target: Target, capacity_s: float, workers: int, log) -> tuple[float, dict]:
    """Capacity in req/s, and per kind of call for a mixed soak (else {})."""
    if not hasattr(target, "kinds"):
        return measure_capacity(client, target, capacity_s, workers), {}
    # Longer than a single model's loop: a summary queued behind 30 others takes seconds to come back.
    capacity, per_kind_capacity = measure_mixed_capacity(client, target, 3 * capacity_s, workers)
    log("answered per kind in the mixed closed loop (req/s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in per_kind_capacity.items()))
    return capacity, per_kind_capacity


def run_soak(target: Target, seconds: float, load: float = 0.7, capacity_s: float = 10.0, workers: int = 32,
             warmup_s: float | None = None, log=None) -> dict:
    """Drive a running gateway; return the report (see the module docstring).

    RSS is sampled after a warm-up at the soak's rate (default 15% of its length, 5-60 s): allocators, caches
    and connection pools fill in the first seconds of load, and that is not growth that goes on.

    Capacity is measured by a closed loop of `workers` clients, near the stream's own 64 in flight: with 8
    clients a 5 s loop measured 44 req/s on the real classifier, and the open-loop stream then sustained only
    14 req/s, so the 10-minute soak ran overloaded (1296 s, p50 4.5 s) instead of at 70%."""
    warmup_s = min(60.0, max(5.0, 0.15 * seconds)) if warmup_s is None else warmup_s
    log = log or progress
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    with httpx.Client(base_url=target.base_url, headers=target.headers, timeout=30, limits=limits) as client:
        reference = references(client, target)
        capacity, per_kind_capacity = measure(client, target, capacity_s, workers, log)
        rate = load * capacity
        log(f"capacity {capacity:.1f} req/s; {warmup_s:.0f} s warm-up, then {seconds:.0f} s at {rate:.1f} req/s")
        stream = Stream(client, target, reference)
        stream.run(rate, warmup_s)
        warmup_requests = stream.sent
        rss_before = ray_processes()
        with RssSampler(max(5.0, seconds / 40)) as sampler:
            elapsed = stream.run(rate, seconds, log=log)
        rss_after = ray_processes()
    n = stream.sent - warmup_requests
    per_kind = {}
    if hasattr(target, "kinds"):
        per_kind = {"mix": [k[0] for k in target.kinds],
                    "capacity_per_kind_rps": {k: round(v, 1) for k, v in per_kind_capacity.items()}}
    return {
        **per_kind,
        "model": target.model, "task": target.task, "seconds": round(elapsed, 1), "warmup_s": round(warmup_s, 1),
        "capacity_rps": round(capacity, 1), "target_rps": round(rate, 1), "achieved_rps": round(n / elapsed, 1),
        "requests": stream.sent, "errors": len(stream.errors), "wrong_answers": len(stream.wrong),
        "statuses": stream.statuses, "by_kind": stream.kind_report(),
        "latency_p50_ms": round(1000 * (percentile(stream.latencies, 50) or 0.0), 1),
        "latency_p99_ms": round(1000 * (percentile(stream.latencies, 99) or 0.0), 1),
        **rss_report(rss_before, rss_after),
        "rss_timeline": sampler.timeline(),
    }


def passed(report: dict) -> bool:
    return report["errors"] == 0 and report["wrong_answers"] == 0 and report["rss_growth_pct"] < RSS_GROWTH_LIMIT_PCT
