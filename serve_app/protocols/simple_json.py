"""The simple JSON API: health, models, one POST route per task that declares one, pipelines, admin.

    GET  /healthz              liveness
    GET  /readyz               readiness (every model answers)
    GET  /v1/models            models with version, readiness, labels, limits
    GET  /v1/models/{name}     one model
    POST /v1/classify          {"texts": [...], "model"?}                      (serve_app/tasks/classification.py)
    POST /v1/summarize         {"texts": [...], "model"?, "max_new_tokens"?, "stream"?}
                               (a task that streams answers `"stream": true` as server-sent events: sse.py)
    GET  /v1/pipelines         pipelines with their graphs
    POST /v1/pipelines/{name}  {"texts": [...], "trace"?}

Admin (bearer token when GATEWAY_ADMIN_TOKEN is set):
    POST /v1/admin/models/{name}/versions/{selector}/load     deploy a registry version (no traffic yet)
    POST /v1/admin/models/{name}/versions/{version}/unload    stop a loaded version
    PUT  /v1/admin/models/{name}/traffic                      {"3": 90, "4": 10}
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from serve_app.dataplane import DataPlane, InferenceRequest, InferenceResponse
from serve_app.dataplane.priority import CURRENT, parse_priority
from serve_app.errors import GatewayError
from serve_app.protocols.hints import request_hints
from serve_app.protocols.json_body import decode_json, parse_body, read_json
from serve_app.protocols.schemas import PipelineRequest
from serve_app.protocols.sse import task_stream
from serve_app.protocols.tfserving import version_status
from serve_app.tasks import TASKS, TaskContract

DeadlineOf = Callable[[Request, DataPlane], float]


def answer_body(answer: InferenceResponse) -> dict:
    if answer.pipeline:
        body = {"pipeline": answer.target, "results": answer.results}
        return body if answer.trace is None else {**body, "trace": answer.trace}
    return {"model": answer.target, "version": answer.version, **answer.fields, "results": answer.results}


def parse_counted(dp: DataPlane, schema, body: object, labels: dict[str, str]):
    """The body checked against its schema; a refusal counts in `gateway_errors` like any failed request."""
    try:
        return parse_body(schema, body)
    except GatewayError as err:
        dp.inference.count_error(labels, err)
        raise


async def respond(dp: DataPlane, deadline_s: float, req: InferenceRequest) -> JSONResponse:
    answer = await dp.deadlines.within(deadline_s, dp.inference.infer(req))
    return JSONResponse(answer_body(answer), headers=answer.headers())


def take_priority(value: object) -> None:
    """A body's `priority` (it wins over the X-Priority header)."""
    if value is not None:
        CURRENT.set(parse_priority(value))


def add_task_route(app: FastAPI, task: TaskContract, get_dataplane: Callable[[], DataPlane],
                   deadline_of: DeadlineOf) -> None:
    async def run_task(request: Request):
        dp = get_dataplane()
        body = await read_json(request, dp.limits)
        if task.streams and isinstance(body, dict) and body.get("stream") is True:
            return await task_stream(dp, task, body, deadline_of(request, dp))
        req = parse_counted(dp, task.request, body, {"model": "", "pipeline": ""})
        take_priority(req.priority)
        needs, fresh = request_hints(req.model_dump(), request.headers)
        return await respond(dp, deadline_of(request, dp), InferenceRequest(
            req.model or "", req.texts, params=task.request_params(req), task=task.name, needs=needs, fresh=fresh))

    app.post(task.route, name=f"run_{task.name}")(run_task)


def add_simple_routes(app: FastAPI, get_dataplane: Callable[[], DataPlane], deadline_of: DeadlineOf) -> None:
    @app.get("/healthz")
    async def healthz():
        return {"live": True}

    @app.get("/readyz")
    async def readyz():
        return await get_dataplane().status.ready()

    @app.get("/v1/models")
    async def list_models():
        return await get_dataplane().status.list_models()

    @app.get("/v1/models/{name}")
    async def model_status(name: str):
        status = await get_dataplane().status.model_status(name)
        return {**status, "model_version_status": version_status(status)}  # TF Serving's status, too

    for task in TASKS.values():
        if task.route:
            add_task_route(app, task, get_dataplane, deadline_of)

    @app.get("/v1/pipelines")
    async def list_pipelines():
        return get_dataplane().status.list_pipelines()

    @app.get("/v1/pipelines/{name}")
    async def describe_pipeline(name: str):
        return get_dataplane().status.describe_pipeline(name)

    @app.post("/v1/pipelines/{name}")
    async def run_pipeline(name: str, request: Request):
        dp = get_dataplane()
        body = await read_json(request, dp.limits)
        dp.table.pipeline(name)  # an unknown pipeline is named before the body's fields are checked
        req = parse_counted(dp, PipelineRequest, body, {"model": "", "pipeline": name})
        take_priority(req.priority)
        _, fresh = request_hints({}, request.headers)
        headers = {k.lower(): v for k, v in request.headers.items()}
        call = InferenceRequest(name, req.texts, params=dict(req.parameters), pipeline=True, trace=req.trace,
                                fresh=fresh, headers=headers)
        return await respond(dp, deadline_of(request, dp), call)


def add_admin_routes(app: FastAPI, get_dataplane: Callable[[], DataPlane], admin: list) -> None:
    @app.post("/v1/admin/models/{name}/versions/{selector}/load", dependencies=admin)
    async def load_version(name: str, selector: str):
        return await get_dataplane().admin.load(name, selector)

    @app.post("/v1/admin/models/{name}/versions/{version}/unload", dependencies=admin)
    async def unload_version(name: str, version: str):
        return await get_dataplane().admin.unload(name, version)

    @app.put("/v1/admin/models/{name}/shadow", dependencies=admin)
    async def set_shadow(name: str, request: Request):
        dp = get_dataplane()
        return await dp.admin.set_shadow(name, decode_json(await request.body(), dp.limits))

    @app.put("/v1/admin/models/{name}/traffic", dependencies=admin)
    async def set_traffic(name: str, request: Request):
        dp = get_dataplane()
        return await dp.admin.set_traffic(name, decode_json(await request.body(), dp.limits))
