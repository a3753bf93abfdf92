"""Micro-batching of records that arrive one at a time (Flink's async operator hands them over singly).

Records waiting together go out as one call of at most `batch_size`; a batch goes when it is full or
`batch_wait_s` after its first record arrived, so a trickle is not held back waiting for company.
Subclasses implement `send(batch)`, which must resolve every record's future with an output or a dead letter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from serve_app.stream.records import GATEWAY_ERROR, Record, dead_letter

LATENCY_SAMPLES = 100_000  # latencies kept for the job's summary (a bounded reservoir, not the whole stream)


@dataclass
class Stats:
    """What the job reports through Flink's metrics system (and its summary line)."""
    records_in: int = 0
    records_out: int = 0
    dead_letters: int = 0
    retries: int = 0
    requests: int = 0
    in_flight: int = 0
    first_in_unix: float | None = None  # wall clock of the first record and the last answer: the job's
    last_out_unix: float | None = None  # processing span, without the JVM's start (records/s in the bench)
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, name: str, n: int = 1) -> None:
        setattr(self, name, getattr(self, name) + n)


@dataclass
class Pending:
    record: Record
    future: asyncio.Future


def chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


class MicroBatcher:
    def __init__(self, batch_size: int | None, batch_wait_s: float, stats: Stats | None,
                 on_latency: Callable[[float], None] | None):
        self.batch_size, self.batch_wait_s = batch_size, batch_wait_s
        self.stats = stats or Stats()
        self.on_latency = on_latency
        self._pending: list[Pending] = []
        self._flush_handle: asyncio.TimerHandle | None = None

    async def send(self, batch: list[Pending]) -> None:
        raise NotImplementedError

    async def enrich(self, record: Record) -> dict:
        """The record's output or dead letter; never raises for anything the model side does."""
        loop = asyncio.get_running_loop()
        record.arrived = record.arrived or time.monotonic()
        pending = Pending(record, loop.create_future())
        self.stats.add("records_in")
        if self.stats.first_in_unix is None:
            self.stats.first_in_unix = time.time()
        self.stats.add("in_flight")
        self._pending.append(pending)
        if len(self._pending) >= (self.batch_size or 1):
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = loop.call_later(self.batch_wait_s, self._flush)
        try:
            result = await pending.future
        finally:
            self.stats.add("in_flight", -1)
        self.stats.add("dead_letters" if "reason" in result else "records_out")
        self.stats.last_out_unix = time.time()
        return result

    def observe_latency(self, pending: Pending, now: float) -> float:
        latency = (now - pending.record.arrived) * 1000
        if len(self.stats.latencies_ms) < LATENCY_SAMPLES:
            self.stats.latencies_ms.append(latency)
        if self.on_latency:
            self.on_latency(latency)
        return latency

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for batch in chunks(self._pending, self.batch_size or 1):
            asyncio.ensure_future(self._send_safely(batch))
        self._pending = []

    async def _send_safely(self, batch: list[Pending]) -> None:
        try:
            await self.send(batch)
        except Exception as err:  # noqa: BLE001 - a bug here must not leave Flink waiting on a future forever
            for p in batch:
                if not p.future.done():
                    p.future.set_result(dead_letter(p.record.key, GATEWAY_ERROR, f"client error: {err!r}"))
