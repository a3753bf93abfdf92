"""The HTTP app: every adapter's routes over one dataplane, one set of error handlers, auth and deadlines.

The simple JSON API (protocols/simple_json.py), OIP v2 (/v2/..., oip_http.py), TF Serving's :predict
(tfserving.py) and the OpenAI API (/openai/v1/..., openai_api.py, errors in OpenAI's shape) are registered
here. No model logic: adapters decode, call the dataplane, encode.

Inference and metadata need `Authorization: Bearer <GATEWAY_INFERENCE_TOKEN>` when that is set (health never does).
Every model call has a deadline: `X-Request-Timeout: <seconds>` or `limits.request_timeout_s` (504 past it).
Admin routes need the admin token when GATEWAY_ADMIN_TOKEN is set.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry.trace import SpanKind
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve_app.dataplane import DataPlane
from serve_app.dataplane.deadlines import TIMEOUT_HEADER
from serve_app.dataplane.priority import CURRENT, HEADER, parse_priority
from serve_app.errors import GatewayError, InvalidInput, retry_after
from serve_app.protocols.auth import check_bearer, realm_of
from serve_app.protocols.early_shed import EarlyShed
from serve_app.protocols.oip_http import add_oip_routes
from serve_app.protocols.openai_api import PREFIX as OPENAI_PREFIX
from serve_app.protocols.openai_api import add_openai_routes, openai_error
from serve_app.protocols.simple_json import add_admin_routes, add_simple_routes
from serve_app.protocols.tfserving import add_tfserving_routes
from serve_app.tracing import TRACE_HEADER, parent_context, span, trace_id

log = logging.getLogger("ray.serve")


def error_response(err: GatewayError, path: str = "") -> JSONResponse:
    """The error's JSON body and status; retryable ones (overloaded, not ready) say when to retry. Under the
    OpenAI base path the body has OpenAI's shape, which its clients parse."""
    seconds = retry_after(err)
    headers = None if seconds is None else {"Retry-After": str(seconds)}
    body = openai_error(err) if path.startswith(OPENAI_PREFIX + "/") else err.to_body()
    return JSONResponse(body, status_code=err.http_status, headers=headers)


def admin_guard(token: str | None) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency applying `check_bearer` to the request's Authorization header. Async although it
    does no I/O: FastAPI runs a plain `def` dependency in its thread pool, a thread hop on every request."""

    async def check(request: Request) -> None:
        check_bearer(token, request.headers.get("authorization", ""), "admin")

    return check


def inference_guard(token: str | None) -> Callable[[Request], Awaitable[None]]:
    """App-wide dependency: every route needs the inference token except health probes and admin routes (those
    have their own token). Applied to all routes so a new route is guarded unless deliberately opened. Async for
    the same reason as `admin_guard`."""

    async def check(request: Request) -> None:
        if realm_of(request.url.path) == "inference":
            check_bearer(token, request.headers.get("authorization", ""), "inference")

    return check


class TracingMiddleware:
    """A server span per inference request (serve_app/tracing.py), child of the client's `traceparent` if sent;
    its trace id goes back in X-Trace-Id. Health probes and admin calls are not traced."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or realm_of(scope["path"]) != "inference":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        with span(f"{scope['method']} {scope['path']}", context=parent_context(headers),
                  kind=SpanKind.SERVER) as server:
            tid = trace_id(server)

            async def send_with_trace_id(message):
                if message["type"] == "http.response.start":
                    server.set_attribute("http.response.status_code", message["status"])
                    if tid:
                        message = {**message, "headers": [*message.get("headers", []),
                                                          (TRACE_HEADER.encode(), tid.encode())]}
                await send(message)

            await self.app(scope, receive, send_with_trace_id)


async def priority_hint(request: Request) -> None:
    """App-wide dependency: the X-Priority header sets the request's class (dataplane/priority.py) for everything
    the request runs (a body parameter, where a route takes one, overrides it). A bad value is a 400."""
    header = request.headers.get(HEADER)
    if header is not None and realm_of(request.url.path) == "inference":
        CURRENT.set(parse_priority(header, HEADER))


def create_app(get_dataplane: Callable[[], DataPlane], admin_token: str | None = None,
               inference_token: str | None = None) -> FastAPI:
    """`get_dataplane` is called per request: under Ray Serve the replica builds its dataplane after import."""
    app = FastAPI(title="Inference gateway", version="0.1.0",
                  dependencies=[Depends(inference_guard(inference_token)), Depends(priority_hint)])
    # No trailing-slash redirects: Starlette builds their Location from the request's Host header, which any
    # client sets (`Host: evil.example` -> a redirect to evil.example). A path with a stray slash is a 404.
    app.router.redirect_slashes = False
    # Added first, so it runs inside the tracing middleware: a request shed early still gets its trace id.
    app.add_middleware(EarlyShed, get_dataplane=get_dataplane, respond=error_response,
                       inference_token=inference_token)
    app.add_middleware(TracingMiddleware)
    admin = [Depends(admin_guard(admin_token))]

    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, err: GatewayError):
        return error_response(err, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException):
        if err.status_code == 404:
            message = f"no route {request.method} {request.url.path}; see GET /v1/models and the README"
        elif err.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        else:
            message = str(err.detail)
        if request.url.path.startswith(OPENAI_PREFIX + "/"):
            kind = "invalid_request_error" if err.status_code < 500 else "server_error"
            body = {"error": {"message": message, "type": kind, "param": None, "code": "http_error"}}
            return JSONResponse(body, status_code=err.status_code)
        return JSONResponse({"error": message, "kind": "http_error"}, status_code=err.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, err: RequestValidationError):
        first = err.errors()[0] if err.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return error_response(InvalidInput(f"{where}: {first['msg']}"), request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error; see the server log", "kind": "internal"}, status_code=500)

    add_simple_routes(app, get_dataplane, deadline_of)
    add_oip_routes(app, get_dataplane, admin, deadline_of)
    add_tfserving_routes(app, get_dataplane, deadline_of)
    add_openai_routes(app, get_dataplane, deadline_of)
    add_admin_routes(app, get_dataplane, admin)
    return app


def deadline_of(request: Request, dataplane: DataPlane) -> float:
    """Seconds this request may take: its X-Request-Timeout header, else the configured default."""
    return dataplane.deadlines.deadline_s(request.headers.get(TIMEOUT_HEADER))
