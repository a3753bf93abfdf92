"""A fault-injecting HTTP proxy in front of the gateway, for the stream job's tests and bench.

Every `reject_every`-th request is answered 429 with `Retry-After` (as the gateway does when a model's queue is
full), without reaching the gateway; `delay_s` slows each forwarded call (to keep a job mid-stream long enough
to kill it); an unreachable gateway (restarting) is answered 502, as a load balancer would.
"""

from __future__ import annotations

import asyncio
import threading

import aiohttp
from aiohttp import web


class FaultProxy:
    def __init__(self, upstream: str, port: int, reject_every: int = 0, retry_after: str = "0.2",
                 delay_s: float = 0.0):
        self.upstream, self.port = upstream.rstrip("/"), port
        self.reject_every, self.retry_after, self.delay_s = reject_every, retry_after, delay_s
        self.requests = self.injected_429 = self.forwarded_ok = self.upstream_failures = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        async with aiohttp.ClientSession() as self._session:
            self._ready.set()
            await self._stop.wait()
        await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        if request.method == "POST" and self.reject_every and self.requests % self.reject_every == 0:
            self.injected_429 += 1
            return web.json_response({"error": "injected: queue full", "kind": "overloaded"}, status=429,
                                     headers={"Retry-After": self.retry_after})
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "x-request-timeout",
                                                                               "authorization")}
        try:
            async with self._session.request(request.method, self.upstream + request.path_qs, data=body,
                                             headers=headers) as r:
                payload = await r.read()
                if r.status == 200 and request.method == "POST":
                    self.forwarded_ok += 1
                keep = {k: v for k, v in r.headers.items() if k.lower() in ("content-type", "retry-after")}
                return web.Response(body=payload, status=r.status, headers=keep)
        except (aiohttp.ClientError, OSError):
            self.upstream_failures += 1
            return web.Response(text="bad gateway: upstream unreachable", status=502)
