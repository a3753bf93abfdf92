"""The simple JSON API over HTTP: decode, call the dataplane, encode. No model logic here.

    GET  /healthz              liveness
    GET  /readyz               readiness (every model answers)
    GET  /v1/models            models with version, readiness, labels, limits
    GET  /v1/models/{name}     one model
    POST /v1/classify          {"texts": [...], "model"?}
    POST /v1/summarize         {"texts": [...], "model"?, "max_new_tokens"?, "stream"?} (stream: SSE, protocols/sse.py)
    GET  /v1/pipelines         pipelines with their graphs
    POST /v1/pipelines/{name}  {"texts": [...], "trace"?}

Inference and metadata need `Authorization: Bearer <GATEWAY_INFERENCE_TOKEN>` when that is set (health never does).
Every model call has a deadline: `X-Request-Timeout: <seconds>` or `limits.request_timeout_s` (504 past it).

Admin (bearer token when GATEWAY_ADMIN_TOKEN is set):
    POST /v1/admin/models/{name}/versions/{selector}/load     deploy a registry version (no traffic yet)
    POST /v1/admin/models/{name}/versions/{version}/unload    stop a loaded version
    PUT  /v1/admin/models/{name}/traffic                      {"3": 90, "4": 10}

Registered here as well: OIP v2 (/v2/..., protocols/oip_http.py), TF Serving's :predict
(protocols/tfserving.py) and the OpenAI API (/openai/v1/..., protocols/openai_api.py, errors in OpenAI's shape),
over the same dataplane and error handlers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve_app.protocols.auth import check_bearer, realm_of
from serve_app.dataplane import Answer, DataPlane
from serve_app.errors import GatewayError, InvalidInput, ModelNotReady, Overloaded, PayloadTooLarge
from serve_app.protocols.oip_http import add_oip_routes
from serve_app.protocols.openai_api import PREFIX as OPENAI_PREFIX
from serve_app.protocols.openai_api import add_openai_routes, openai_error
from serve_app.protocols.sse import summarize_stream
from serve_app.protocols.tfserving import add_tfserving_routes, version_status

log = logging.getLogger("ray.serve")

TIMEOUT_HEADER = "x-request-timeout"


def error_response(err: GatewayError, path: str = "") -> JSONResponse:
    """The error's JSON body and status; retryable ones (overloaded, not ready) say when to retry. Under the
    OpenAI base path the body has OpenAI's shape, which its clients parse."""
    headers = None
    if isinstance(err, Overloaded | ModelNotReady):
        retry_after = err.details.get("retry_after_s", 1)
        headers = {"Retry-After": str(max(1, math.ceil(retry_after)))}
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


def create_app(get_dataplane: Callable[[], DataPlane], admin_token: str | None = None,
               inference_token: str | None = None) -> FastAPI:
    """`get_dataplane` is called per request: under Ray Serve the replica builds its dataplane after import."""
    app = FastAPI(title="Inference gateway", version="0.1.0", dependencies=[Depends(inference_guard(inference_token))])
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

    async def _body(request: Request, dataplane: DataPlane) -> object:
        declared = request.headers.get("content-length")
        limit = dataplane.config.server.limits.max_body_bytes
        # Refuse an oversized body before reading it into memory.
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
        return dataplane.decode_json(await request.body())

    async def _call(request: Request, op: Callable[[DataPlane, object], Awaitable[Answer]]) -> JSONResponse:
        dataplane = get_dataplane()
        body = await _body(request, dataplane)
        answer = await dataplane.within(deadline_of(request, dataplane), op(dataplane, body))
        return JSONResponse(answer.body, headers=answer.headers)

    @app.get("/healthz")
    async def healthz():
        return {"live": True}

    @app.get("/readyz")
    async def readyz():
        return await get_dataplane().ready()

    @app.get("/v1/models")
    async def list_models():
        return await get_dataplane().list_models()

    @app.get("/v1/models/{name}")
    async def model_status(name: str):
        status = await get_dataplane().model_status(name)
        return {**status, "model_version_status": version_status(status)}  # TF Serving's status, too

    @app.post("/v1/classify")
    async def classify(request: Request):
        return await _call(request, lambda dp, body: dp.classify(body))

    @app.post("/v1/summarize")
    async def summarize(request: Request):
        dataplane = get_dataplane()
        body = await _body(request, dataplane)
        if isinstance(body, dict) and body.get("stream") is True:
            return await summarize_stream(dataplane, body, deadline_of(request, dataplane))
        answer = await dataplane.within(deadline_of(request, dataplane), dataplane.summarize(body))
        return JSONResponse(answer.body, headers=answer.headers)

    add_oip_routes(app, get_dataplane, admin, deadline_of)
    add_tfserving_routes(app, get_dataplane, deadline_of)
    add_openai_routes(app, get_dataplane, deadline_of)

    @app.get("/v1/pipelines")
    async def list_pipelines():
        return get_dataplane().list_pipelines()

    @app.get("/v1/pipelines/{name}")
    async def describe_pipeline(name: str):
        return get_dataplane().describe_pipeline(name)

    @app.post("/v1/pipelines/{name}")
    async def run_pipeline(name: str, request: Request):
        return await _call(request, lambda dp, body: dp.run_pipeline(name, body))

    @app.post("/v1/admin/models/{name}/versions/{selector}/load", dependencies=admin)
    async def load_version(name: str, selector: str):
        return await get_dataplane().load(name, selector)

    @app.post("/v1/admin/models/{name}/versions/{version}/unload", dependencies=admin)
    async def unload_version(name: str, version: str):
        return await get_dataplane().unload(name, version)

    @app.put("/v1/admin/models/{name}/traffic", dependencies=admin)
    async def set_traffic(name: str, request: Request):
        dataplane = get_dataplane()
        return await dataplane.set_traffic(name, dataplane.decode_json(await request.body()))

    return app


def deadline_of(request: Request, dataplane: DataPlane) -> float:
    """Seconds this request may take: its X-Request-Timeout header, else the configured default."""
    return dataplane.deadline_s(request.headers.get(TIMEOUT_HEADER))
