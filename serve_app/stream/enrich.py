"""The async gateway client of the stream job: one call per micro-batch, bounded in flight, every record answered.

`enrich(record)` is awaited once per record (Flink's async operator calls it with up to `capacity` records in
flight). Records waiting together are sent as one call of a task's route (`--target classify`: /v1/classify;
`summarize`: /v1/summarize) or of a pipeline (`pipeline:<name>`: /v1/pipelines/<name>), of at most
`batch_size` texts - the model's own `@serve.batch` size, read from /v1/models - and at most
`max_requests` calls are in flight. Each record resolves to exactly one output or dead letter:
  200 -> an output with the model and version that answered;
  429/503 -> wait Retry-After, retry; 502/504/connection refused (a gateway restarting) -> back off, retry;
  other 4xx (the gateway's typed JSON error) -> a batch of several is split in halves and retried, so only the offending record is dead-lettered
           with the gateway's error; 5xx -> retried `max_server_errors` times, then dead-lettered;
  a 4xx that is not the gateway's (Ray Serve's "no route" while the gateway redeploys) -> retried;
  past the record's deadline -> dead-lettered as deadline_exceeded.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import aiohttp

from serve_app.stream.batching import MicroBatcher, Pending, Stats
from serve_app.stream.records import DEADLINE_EXCEEDED, GATEWAY_ERROR, REJECTED, dead_letter, output
from serve_app.stream.retry import RetryPolicy

PIPELINE = "pipeline:"
DEFAULT_BATCH = 8


def target_path(target: str) -> str:
    """The gateway route a target names: a pipeline, or a task's route by its last segment. The gateway's
    /v1/models says which route each model answers, so no task is named here (this runs without the gateway's
    packages, in the Flink venv)."""
    if target.startswith(PIPELINE):
        return f"/v1/pipelines/{target.removeprefix(PIPELINE)}"
    return f"/v1/{target}"


class GatewayEnricher(MicroBatcher):
    def __init__(self, base_url: str, *, target: str = "classify", model: str | None = None,
                 batch_size: int | None = None, max_requests: int = 8, deadline_s: float = 120.0,
                 batch_wait_s: float = 0.002, retry: RetryPolicy = RetryPolicy(), token: str | None = None,
                 stats: Stats | None = None, on_latency: Callable[[float], None] | None = None):
        self.base_url = base_url.rstrip("/")
        self.path = target_path(target)
        self.by_task = not target.startswith(PIPELINE)  # a task's route takes a model name; a pipeline does not
        self.target, self.model, self.deadline_s = target, model, deadline_s
        self.retry = retry
        self.headers = {"content-type": "application/json"}
        if token:
            self.headers["authorization"] = f"Bearer {token}"
        super().__init__(batch_size, batch_wait_s, stats, on_latency)
        self._max_requests = max_requests
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
                                              connector=aiohttp.TCPConnector(limit=self._max_requests))
        self._slots = asyncio.Semaphore(self._max_requests)
        if self.batch_size is None:
            self.batch_size = await self._model_batch_size()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _model_batch_size(self) -> int:
        """The model's `batching.max_batch_size` from /v1/models/<name>; DEFAULT_BATCH if it cannot be read."""
        if not self.by_task:
            return DEFAULT_BATCH
        name = self.model
        try:
            if name is None:
                async with self._session.get(f"{self.base_url}/v1/models", headers=self.headers) as r:
                    name = next(m["name"] for m in (await r.json())["models"] if m.get("route") == self.path)
            async with self._session.get(f"{self.base_url}/v1/models/{name}", headers=self.headers) as r:
                return int((await r.json())["batching"]["max_batch_size"])
        except (TimeoutError, aiohttp.ClientError, KeyError, StopIteration, TypeError, ValueError):
            return DEFAULT_BATCH

    async def send(self, batch: list[Pending]) -> None:
        await self._send_until_answered(batch)

    async def _send_until_answered(self, batch: list[Pending]) -> None:
        deadline = min(p.record.arrived for p in batch) + self.deadline_s
        server_errors = 0
        attempt = 0
        while True:
            attempt += 1
            for p in batch:
                p.record.attempts += 1
            status, body, retry_after = await self._post([p.record.text for p in batch], deadline)
            if status == 200:
                return self._answer(batch, body)
            if status is not None and 400 <= status < 500 and status != 429 and _is_gateway_error(body):
                if len(batch) > 1:  # one bad text fails the whole call: find it
                    half = len(batch) // 2
                    await asyncio.gather(self._send_until_answered(batch[:half]),
                                         self._send_until_answered(batch[half:]))
                    return None
                return self._reject(batch, REJECTED, _error_of(body, status), status)
            foreign_4xx = status is not None and status < 500  # not the gateway's own error: wait for it
            if not (self.retry.is_transient(status) or foreign_4xx):
                server_errors += 1
                if server_errors >= self.retry.max_server_errors:
                    return self._reject(batch, GATEWAY_ERROR, _error_of(body, status), status)
            wait = self.retry.delay(attempt, status, retry_after)
            if time.monotonic() + wait >= deadline:
                why = f"no answer within {self.deadline_s:g} s; last: {_error_of(body, status)}"
                return self._reject(batch, DEADLINE_EXCEEDED, why, status)
            self.stats.add("retries", len(batch))
            await asyncio.sleep(wait)

    async def _post(self, texts: list[str], deadline: float) -> tuple[int | None, object, str | None]:
        """(status, decoded body or error text, Retry-After); status None when the connection failed."""
        payload = {"texts": texts}
        if self.model and self.by_task:
            payload["model"] = self.model
        headers = dict(self.headers)
        remaining = max(0.5, deadline - time.monotonic())
        headers["x-request-timeout"] = f"{min(remaining, 60):.3f}"
        async with self._slots:
            self.stats.add("requests")
            try:
                async with self._session.post(self.base_url + self.path, data=json.dumps(payload),
                                              headers=headers,
                                              timeout=aiohttp.ClientTimeout(total=remaining)) as r:
                    raw = await r.read()
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        body = raw.decode("utf-8", "replace")[:500]
                    return r.status, body, r.headers.get("retry-after")
            except (TimeoutError, aiohttp.ClientError, OSError) as err:
                return None, f"connection failed: {err!r}", None

    def _answer(self, batch: list[Pending], body: dict) -> None:
        results = body.get("results") or []
        if len(results) != len(batch):
            return self._reject(batch, GATEWAY_ERROR, f"{len(results)} results for {len(batch)} texts", 200)
        model = body.get("model") or body.get("pipeline") or self.target
        now = time.monotonic()
        for p, result in zip(batch, results):
            latency = self.observe_latency(p, now)
            p.future.set_result(output(p.record, result, model, body.get("version"), latency, "gateway"))
        return None

    def _reject(self, batch: list[Pending], reason: str, error: str, status: int | None) -> None:
        for p in batch:
            p.future.set_result(dead_letter(p.record.key, reason, error, status, record=p.record.text))
        return None


def _is_gateway_error(body: object) -> bool:
    return isinstance(body, dict) and "kind" in body and "error" in body


def _error_of(body: object, status: int | None) -> str:
    if isinstance(body, dict) and "error" in body:
        kind = body.get("kind")
        return f"{status} {kind}: {body['error']}" if kind else f"{status}: {body['error']}"
    return f"{status}: {body}" if status is not None else str(body)
