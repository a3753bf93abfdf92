"""Fakes at the edges: an HTTP server that answers like the gateway, an HTTP probe target, Ray Serve's gRPC
context and deployment handles as the gateway uses them, and a bare HTTP response for the fuzz oracle."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler

from aiohttp import web

from serve_app.protocols.oip_grpc import OipGrpcServicer


class FakeGateway:
    """A real HTTP server that answers like the gateway: 429 first, a typed 400 for empty texts."""

    def __init__(self, first_429s: int = 0):
        self.first_429s, self.calls, self.sizes = first_429s, 0, []

    async def classify(self, request):
        self.calls += 1
        texts = (await request.json())["texts"]
        if self.calls <= self.first_429s:
            return web.json_response({"error": "queue full", "kind": "overloaded"}, status=429,
                                     headers={"Retry-After": "0.01"})
        if any(not t.strip() for t in texts):
            return web.json_response({"error": "texts.0: text is empty", "kind": "invalid_input"}, status=400)
        self.sizes.append(len(texts))
        return web.json_response({"model": "m", "version": "3",
                                  "results": [{"label": t.upper()} for t in texts]})

    async def models(self, request):
        return web.json_response({"name": "m", "batching": {"max_batch_size": 4}})

    @asynccontextmanager
    async def serving(self):
        """Serves on a free loopback port for the block; yields its base URL."""
        app = web.Application()
        app.router.add_post("/v1/classify", self.classify)
        app.router.add_get("/v1/models/m", self.models)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        finally:
            await runner.cleanup()


class Ready(BaseHTTPRequestHandler):
    """A probe target for http.server: answers every GET with `status`."""

    status = 200

    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args):
        pass


class FakeResponse:
    """An HTTP response as the fuzz oracle reads it."""

    def __init__(self, status_code: int, text: str):
        self.status_code, self.text = status_code, text

    def json(self):
        return json.loads(self.text)


# -- Ray Serve's side of the gRPC servicer and of deployment handles --------------------------------------------
class Context:
    """The part of Ray Serve's gRPC context the servicer uses."""

    def __init__(self, metadata=()):
        self.metadata, self.code, self.details, self.trailing = list(metadata), None, None, []

    def invocation_metadata(self):
        return self.metadata

    def set_code(self, code):
        self.code = code

    def set_details(self, details):
        self.details = details

    def set_trailing_metadata(self, md):
        self.trailing = md


class Servicer(OipGrpcServicer):
    """The OIP gRPC servicer over a given dataplane, without Ray Serve."""

    def __init__(self, dp, inference_token=None, admin_token=None):
        self.dataplane, self.inference_token, self.admin_token = dp, inference_token, admin_token


def grpc_call(servicer, method, req, metadata=()):
    """One servicer call with a fake context; returns the context (code, details, trailers) and the reply."""
    ctx = Context(metadata)
    reply = asyncio.run(getattr(servicer, method)(req, ctx))
    return ctx, reply


class FailingResponse:
    """A deployment response whose await raises `error`."""

    def __init__(self, error):
        self.error = error

    def __await__(self):
        async def fail():
            raise self.error
        return fail().__await__()


class SlowResponse:
    """A deployment response that takes 30 s; records whether it was cancelled."""

    def __init__(self):
        self.cancelled = False

    def __await__(self):
        return asyncio.sleep(30).__await__()

    def cancel(self):
        self.cancelled = True


class Handle:
    """A deployment handle whose method calls fail with `error` (the first `answer_after`, then `answer()`
    answers; by default every call fails); counts its calls."""

    deployment_name = "clf"

    def __init__(self, error, answer_after: int | None = None, answer=None):
        self.infer = self.info = self
        self.error, self.answer_after, self.answer = error, answer_after, answer
        self.calls = 0

    def remote(self, *args):
        self.calls += 1
        if self.answer_after is not None and self.calls > self.answer_after:
            return self.answer()
        return FailingResponse(self.error)
