"""Fakes behind the in-process app, one request at a time: the classifier "clf" (version 1) as the auth, deadline,
replica-fault and traversal unit tests use it (its config, dataplane, an OIP gRPC request), and the chain of
support.fakes as the OIP and TF Serving tests use it."""

from __future__ import annotations

import asyncio

import httpx

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.dataplane import DataPlane
from serve_app.dataplane.routing import ModelRoutes
from serve_app.protocols.grpc_stubs import service_pb2 as pb
from serve_app.protocols.http_app import create_app
from support.fakes import CLASSIFIED, FakeBackend, FakeManager, chain_dataplane

CONFIG = {
    "server": {"limits": {"request_timeout_s": 5, "max_request_timeout_s": 10}},
    "models": [{"name": "clf", "task": "classification", "version": "1"}],
}
INFER = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]}


def classifier(**kw) -> FakeBackend:
    """The classifier "clf", version 1: answers at once unless given a delay or an error."""
    return FakeBackend("1", CLASSIFIED, info={"version": "1", "labels": ["a"], "max_length": 8}, **kw)


def dataplane(model=None, config=CONFIG) -> DataPlane:
    routes = {"clf": ModelRoutes("clf")}
    routes["clf"].add("1", model or classifier(), 1.0)
    manager = FakeManager(backend=lambda label: classifier())
    return DataPlane(parse_config(config, settings=GatewaySettings()), routes, manager)


def asgi_request(app, method, path, raise_app_exceptions=True, **kw) -> httpx.Response:
    """One request to an ASGI app in-process."""
    async def go():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.request(method, path, **kw)
    return asyncio.run(go())


def request(method, path, dp=None, admin=None, inference=None, **kw) -> httpx.Response:
    """One request to the app over `dp` (default: the classifier), with the given tokens; errors come back as
    the app answers them."""
    dp = dp or dataplane()
    app = create_app(lambda: dp, admin_token=admin, inference_token=inference)
    return asgi_request(app, method, path, raise_app_exceptions=False, **kw)


def chain_call(method, path, **kw) -> httpx.Response:
    """One request to the app over the chain of fakes (support.fakes.chain_dataplane)."""
    dp = chain_dataplane()
    return asgi_request(create_app(lambda: dp), method, path, **kw)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def infer_request():
    req = pb.ModelInferRequest(model_name="clf")
    req.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"hi")
    return req
