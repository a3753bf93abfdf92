"""OIP v2 REST routes (KServe/Triton clients): health, metadata, infer (JSON or binary), repository."""

from __future__ import annotations

import json
from collections.abc import Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from serve_app.dataplane import DataPlane
from serve_app.errors import ModelNotFound, ModelNotReady, PayloadTooLarge
from serve_app.protocols import oip
from serve_app.protocols.tensors import split_body

HEADER_LENGTH = "Inference-Header-Content-Length"


def add_oip_routes(app: FastAPI, get_dataplane: Callable[[], DataPlane], admin: list,
                   deadline_of: Callable[[Request, DataPlane], float]) -> None:
    @app.get("/v2/health/live")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready():
        await get_dataplane().ready()
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

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str | None = None):
        dp = get_dataplane()
        raw = await request.body()
        limit = dp.config.server.limits.max_body_bytes
        if len(raw) > limit:
            raise PayloadTooLarge(f"request body is {len(raw)} bytes; the limit is {limit}")
        header, tail = split_body(raw, request.headers.get(HEADER_LENGTH))
        body = dp.decode_json(header)
        response, out_tail = await dp.within(deadline_of(request, dp), oip.infer(dp, name, version, body, tail))
        if not out_tail and not any("binary_data_size" in (o.get("parameters") or {}) for o in response["outputs"]):
            return JSONResponse(response)
        head = json.dumps(response).encode()
        return Response(head + out_tail, media_type="application/octet-stream",
                        headers={HEADER_LENGTH: str(len(head))})

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
        await change(dp, name, dp.decode_json(raw) if raw.strip() else None)
        return {}
