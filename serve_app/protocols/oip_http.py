"""OIP v2 REST routes (KServe/Triton clients): health, metadata, infer (JSON or binary), repository."""

from __future__ import annotations

import json
from collections.abc import Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from serve_app.dataplane import DataPlane
from serve_app.dataplane.generation import ended_badly
from serve_app.errors import InvalidInput, ModelNotFound, ModelNotReady, PayloadTooLarge
from serve_app.protocols import oip
from serve_app.protocols.json_body import decode_json
from serve_app.protocols.sse import SSE_HEADERS, frame, guarded
from serve_app.protocols.tensors import TEXT_INPUT, split_body
from serve_app.tasks import contract

# Triton's own names in its generate extension, taken and answered beside the model's metadata names.
GENERATE_INPUT, GENERATE_OUTPUT = "text_input", "text_output"

HEADER_LENGTH = "Inference-Header-Content-Length"


GetDataPlane = Callable[[], DataPlane]
DeadlineOf = Callable[[Request, DataPlane], float]


def add_oip_routes(app: FastAPI, get_dataplane: GetDataPlane, admin: list, deadline_of: DeadlineOf) -> None:
    _add_metadata_routes(app, get_dataplane)
    _add_infer_route(app, get_dataplane, deadline_of)
    _add_generate_routes(app, get_dataplane, deadline_of)
    _add_repository_routes(app, get_dataplane, admin)


def _add_metadata_routes(app: FastAPI, get_dataplane: GetDataPlane) -> None:
    @app.get("/v2/health/live")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready():
        await get_dataplane().status.ready()
        return {"ready": True}

    @app.get("/v2")
    async def server_metadata():
        return oip.server_metadata()

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str | None = None):
        return await oip.model_metadata(get_dataplane(), name, version)

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None):
        if not await oip.model_ready(get_dataplane(), name, version):
            raise ModelNotReady(f"model '{name}'" + (f" version {version}" if version else "") + " is not ready")
        return {"name": name, "ready": True}


def _add_infer_route(app: FastAPI, get_dataplane: GetDataPlane, deadline_of: DeadlineOf) -> None:
    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str | None = None):
        dp = get_dataplane()
        raw = await request.body()
        limit = dp.limits.max_body_bytes
        if len(raw) > limit:
            raise PayloadTooLarge(f"request body is {len(raw)} bytes; the limit is {limit}")
        header, tail = split_body(raw, request.headers.get(HEADER_LENGTH))
        body = decode_json(header, dp.limits)
        work = oip.infer(dp, name, version, body, tail, request.headers)
        response, out_tail = await dp.deadlines.within(deadline_of(request, dp), work)
        if not out_tail and not any("binary_data_size" in (o.get("parameters") or {}) for o in response["outputs"]):
            return JSONResponse(response)
        head = json.dumps(response).encode()
        return Response(head + out_tail, media_type="application/octet-stream",
                        headers={HEADER_LENGTH: str(len(head))})


def _generated_field(dp: DataPlane, name: str) -> str:
    """The output the model's metadata declares for generated text (`summary` for summarizers)."""
    if dp.table.is_model(name):
        return contract(dp.table.model(name).task).text_output or GENERATE_OUTPUT
    return GENERATE_OUTPUT


async def _open_generation(dp: DataPlane, name: str, version: str | None, request: Request, deadline: float):
    """Triton's generate extension maps JSON keys to the model's input and output names: the input is `text` (as
    the metadata declares; Triton's usual `text_input` is taken too), the answer carries the metadata's output
    (`summary`) and `text_output` with the same text. {"parameters": {"max_tokens", "temperature", ...}}."""
    body = decode_json(await request.body(), dp.limits)
    key = next((k for k in (TEXT_INPUT, GENERATE_INPUT) if isinstance(body, dict) and k in body), TEXT_INPUT)
    if not isinstance(body, dict) or not isinstance(body.get(key), str) or not body[key].strip():
        raise InvalidInput(f"send {{\"{TEXT_INPUT}\": \"<article>\", \"parameters\": {{...}}}} "
                           f"(or \"{GENERATE_INPUT}\")", field=key)
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput("parameters: must be an object", field="parameters")
    params = dict(params)
    params.pop("stream", None)
    if "max_tokens" in params:
        params["max_new_tokens"] = params.pop("max_tokens")
    dp.inference.check_texts([body[key]])
    ref = f"{name}@{version}" if version else name
    request_ = {"text": body[key], "params": params}  # the kind is the model's task's (its contract)
    stream = await dp.deadlines.within(deadline, dp.inference.open_stream(ref, request_, deadline))
    return stream, _generated_field(dp, stream.model)


def _add_generate_routes(app: FastAPI, get_dataplane: GetDataPlane, deadline_of: DeadlineOf) -> None:
    # generate answers once; generate_stream sends one answer-shaped object per SSE event.
    async def open_generation(name: str, version: str | None, request: Request):
        dp = get_dataplane()
        return await _open_generation(dp, name, version, request, deadline_of(request, dp))

    @app.post("/v2/models/{name}/generate")
    @app.post("/v2/models/{name}/versions/{version}/generate")
    async def generate(name: str, request: Request, version: str | None = None):
        stream, field = await open_generation(name, version, request)
        done = await stream.collect()
        if (err := ended_badly(done, stream.model)) is not None:
            raise err
        return {"model_name": stream.model, "model_version": stream.version, field: done["text"],
                GENERATE_OUTPUT: done["text"], "finish_reason": done["finish_reason"],
                "completion_tokens": done["completion_tokens"]}

    @app.post("/v2/models/{name}/generate_stream")
    @app.post("/v2/models/{name}/versions/{version}/generate_stream")
    async def generate_stream(name: str, request: Request, version: str | None = None):
        stream, field = await open_generation(name, version, request)

        async def events():
            async for event in guarded(stream):
                head = {"model_name": stream.model, "model_version": stream.version}
                if event["type"] == "token":
                    yield frame({**head, field: event["text"], GENERATE_OUTPUT: event["text"]})
                elif event["type"] == "done":
                    yield frame({**head, field: "", GENERATE_OUTPUT: "", "finish_reason": event["finish_reason"],
                                 "completion_tokens": event["completion_tokens"]})
                else:
                    yield frame({"error": event["error"].message})

        return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)


def _add_repository_routes(app: FastAPI, get_dataplane: GetDataPlane, admin: list) -> None:
    @app.post("/v2/repository/index")
    async def repository_index():
        return await oip.repository_index(get_dataplane())

    @app.post("/v2/repository/models/{name}/{action}", dependencies=admin)
    async def repository_change(name: str, action: str, request: Request):
        change = {"load": oip.load, "unload": oip.unload}.get(action)
        if change is None:
            raise ModelNotFound(f"no repository action '{action}'; use load or unload")
        dp = get_dataplane()
        raw = await request.body()  # the body is optional: {"parameters": {"version": "3"}}
        await change(dp, name, decode_json(raw, dp.limits) if raw.strip() else None)
        return {}
