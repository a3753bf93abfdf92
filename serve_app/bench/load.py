"""The one load generator of `make bench`, the soak, the stream bench, the generation and variant benches.

`closed_loop`: `concurrency` clients, each sending its next request when the previous answer arrives, for a
bounded time and never past `max_requests` (throughput and latency at a given concurrency). `open_loop`: requests
sent on a fixed schedule whatever the answers (a soak at a share of capacity). Loopback only; every call checks
its answer (a call that raises is a failed request). `threaded` runs a blocking client (httpx, gRPC stubs) on a
pool of its own so the same loops drive it."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields

from serve_app.bench.stats import percentile

Call = Callable[[int], Awaitable[object]]  # request number -> its (checked) answer, or raises


@dataclass
class Sample:
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    # Kept out of as_dict (not written to JSON): request number -> (latency ms, what the call returned), and the
    # first failure's message.
    answers: dict[int, tuple[float, object]] = field(default_factory=dict, repr=False)
    first_error: str | None = None

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("answers", "first_error")}


async def closed_loop(call: Call, concurrency: int, seconds: float = math.inf, max_requests: int = 100_000,
                      timeout_s: float = 120.0) -> Sample:
    answers: dict[int, tuple[float, object]] = {}
    errors, counter, first_error = 0, 0, None
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal errors, counter, first_error
        while time.perf_counter() < deadline and counter < max_requests:
            n = counter
            counter += 1
            started = time.perf_counter()
            try:
                result = await asyncio.wait_for(call(n), timeout_s)
            except Exception as err:  # noqa: BLE001 - any failure is counted, none stops the run
                errors += 1
                first_error = first_error or f"{type(err).__name__}: {err}"
                continue
            answers[n] = ((time.perf_counter() - started) * 1000, result)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ms = [latency for latency, _ in answers.values()]

    def pct(q: float) -> float:
        value = percentile(ms, q)
        return float("nan") if value is None else round(value, 2)

    return Sample(len(ms), errors, round(elapsed, 2), round(len(ms) / elapsed, 2), pct(50), pct(95), pct(99),
                  answers, first_error)


def threaded(blocking: Callable[[int], object], workers: int) -> tuple[Call, ThreadPoolExecutor]:
    """An async Call from a blocking one, run on a pool of `workers` threads (asyncio's default pool has
    min(32, cores + 4) threads: 6 here, which would cap a loop of 32 clients). Shut the pool down after."""
    pool = ThreadPoolExecutor(workers, thread_name_prefix="load")

    async def call(n: int) -> object:
        return await asyncio.get_running_loop().run_in_executor(pool, blocking, n)

    return call, pool


def closed_loop_blocking(blocking: Callable[[int], object], concurrency: int, seconds: float = math.inf,
                         max_requests: int = 100_000, timeout_s: float = 120.0) -> Sample:
    """`closed_loop` over a blocking call, from synchronous code (one thread per client)."""
    call, pool = threaded(blocking, concurrency)
    try:
        return asyncio.run(closed_loop(call, concurrency, seconds, max_requests, timeout_s))
    finally:
        pool.shutdown(wait=True)


def open_loop(blocking: Callable[[int], None], rate: float, seconds: float, first: int = 0, workers: int = 64,
              tick: Callable[[int, float], None] | None = None, every_s: float = 30.0) -> float:
    """Send request `first + i` at `i / rate` seconds, whatever the answers, for `seconds`; each runs `blocking`
    on a pool of `workers` threads (which records and checks it). `tick(sent, elapsed)` every `every_s` shows a
    long run is alive. Waits for every request; returns the seconds the run took."""
    started, n = time.perf_counter(), int(rate * seconds)
    next_tick = started + every_s
    with ThreadPoolExecutor(workers, thread_name_prefix="open-loop") as pool:
        futures = []
        for i in range(n):
            time.sleep(max(0.0, started + i / rate - time.perf_counter()))
            futures.append(pool.submit(blocking, first + i))
            if tick and time.perf_counter() >= next_tick:
                next_tick += every_s
                tick(i + 1, time.perf_counter() - started)
        for f in futures:
            f.result()
    return time.perf_counter() - started
