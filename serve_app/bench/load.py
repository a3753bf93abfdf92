"""Closed-loop load: `concurrency` clients, each sending its next request when the previous answer arrives,
for a bounded time (and never past `max_requests`). Loopback only; every call checks its answer."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

Call = Callable[[int], Awaitable[None]]  # request number -> completes when the (checked) answer is in


@dataclass
class Sample:
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    def as_dict(self) -> dict:
        return asdict(self)


def _percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


async def closed_loop(call: Call, concurrency: int, seconds: float, max_requests: int = 100_000,
                      timeout_s: float = 120.0) -> Sample:
    latencies: list[float] = []
    errors = 0
    counter = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal errors, counter
        while time.perf_counter() < deadline and counter < max_requests:
            n = counter
            counter += 1
            started = time.perf_counter()
            try:
                await asyncio.wait_for(call(n), timeout_s)
            except Exception:  # noqa: BLE001 - any failure is counted, none stops the run
                errors += 1
                continue
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ms = sorted(latencies)
    return Sample(len(ms), errors, round(elapsed, 2), round(len(ms) / elapsed, 2),
                  round(statistics.median(ms), 2) if ms else float("nan"), round(_percentile(ms, 0.95), 2),
                  round(_percentile(ms, 0.99), 2))


class RawBatcher:
    """The model's own limit: requests coalesced greedily (everything queued, up to `max_batch`) and run
    back to back in one worker thread, in this process, with no network and no serialization."""

    def __init__(self, predict: Callable[[list[str]], list[dict]], max_batch: int = 32):
        self.predict = predict
        self.max_batch = max_batch
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None

    async def submit(self, text: str) -> dict:
        if self.queue is None:
            self.queue = asyncio.Queue()
            self.task = asyncio.create_task(self._worker())
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((text, future))
        return await future

    async def _worker(self) -> None:
        while True:
            items = [await self.queue.get()]
            while len(items) < self.max_batch and not self.queue.empty():
                items.append(self.queue.get_nowait())
            try:
                results = await asyncio.to_thread(self.predict, [t for t, _ in items])
                for (_, future), result in zip(items, results):
                    future.set_result(result)
            except Exception as err:  # noqa: BLE001 - hand the failure to every waiting request
                for _, future in items:
                    future.set_exception(err)

    async def close(self) -> None:
        if self.task:
            self.task.cancel()
            self.queue = self.task = None
