"""Auth, deadlines, backpressure and replica-loss mapping, over the in-process app and a fake gRPC context."""

from __future__ import annotations

import asyncio
import logging

import grpc
import httpx
import pytest
from support.fakes import CLASSIFIED, FakeBackend, FakeManager
from support.servers import Handle, Servicer, SlowResponse, grpc_call
from ray.exceptions import ActorDiedError
from ray.serve.exceptions import BackPressureError

from deployments.router import HandleBackend
from serve_app.app import deployment_options
from serve_app.config import ConfigError, parse_config
from serve_app.dataplane import DataPlane
from serve_app.errors import InvalidInput, ModelNotReady, Overloaded
from serve_app.http_api import create_app
from serve_app.protocols.grpc_stubs import service_pb2 as pb
from serve_app.registry import Registry
from serve_app.registry.errors import SelectorError, UnsafeArtifactError
from serve_app.registry.store import open_store
from serve_app.routing import ModelRoutes
from serve_app.settings import GatewaySettings

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


def request(method, path, dp=None, admin=None, inference=None, **kw):
    dp = dp or dataplane()
    app = create_app(lambda: dp, admin_token=admin, inference_token=inference)

    async def go():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.request(method, path, **kw)
    return asyncio.run(go())


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


# -- auth -------------------------------------------------------------------------------------------------------
INFERENCE_CALLS = [
    ("POST", "/v1/classify", {"json": {"texts": ["x"]}}),
    ("POST", "/v2/models/clf/infer", {"json": INFER}),
    ("POST", "/v1/models/clf:predict", {"json": {"instances": ["x"]}}),
    ("GET", "/v1/models", {}),
    ("GET", "/v2/models/clf", {}),
    ("POST", "/v2/repository/index", {}),
]


@pytest.mark.parametrize("method, path, kw", INFERENCE_CALLS)
def test_inference_token_is_401_without_403_wrong_and_200_right(method, path, kw):
    missing = request(method, path, inference="tok-123", **kw)
    basic = request(method, path, inference="tok-123", headers={"Authorization": "Basic dG9rLTEyMw=="}, **kw)
    wrong = request(method, path, inference="tok-123", headers=bearer("tok-124"), **kw)
    right = request(method, path, inference="tok-123", headers=bearer("tok-123"), **kw)
    assert missing.status_code == 401 and missing.json()["kind"] == "unauthenticated"
    assert basic.status_code == 401
    assert wrong.status_code == 403 and wrong.json()["kind"] == "permission_denied"
    assert "tok-12" not in wrong.text and "tok-12" not in missing.text
    assert right.status_code == 200, right.text


def test_health_stays_open_and_admin_needs_its_own_token():
    for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"):
        assert request("GET", path, inference="inf", admin="adm").status_code == 200, path
    load = "/v1/admin/models/clf/versions/2/load"
    assert request("POST", load, inference="inf", admin="adm", headers=bearer("inf")).status_code == 403
    assert request("POST", load, inference="inf", admin="adm", headers=bearer("adm")).status_code == 200
    repo = "/v2/repository/models/clf/load"
    assert request("POST", repo, inference="inf", admin="adm", headers=bearer("inf")).status_code == 403
    # An inference token does not open admin, nor an admin token inference.
    assert request("POST", "/v1/classify", inference="inf", admin="adm", headers=bearer("adm"),
                   json={"texts": ["x"]}).status_code == 403


def test_unset_tokens_leave_everything_open():
    assert request("POST", "/v1/classify", json={"texts": ["x"]}).status_code == 200
    assert request("POST", "/v1/admin/models/clf/versions/2/load").status_code == 200


def test_tokens_are_never_logged(caplog):
    caplog.set_level(logging.DEBUG)
    request("POST", "/v1/classify", inference="very-secret", headers=bearer("also-secret"), json={"texts": ["x"]})
    request("POST", "/v1/classify", inference="very-secret", headers=bearer("very-secret"), json={"texts": ["x"]})
    assert "secret" not in caplog.text


def infer_request():
    req = pb.ModelInferRequest(model_name="clf")
    req.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"hi")
    return req


def test_grpc_inference_token_in_metadata():
    s = Servicer(dataplane(), inference_token="inf", admin_token="adm")
    assert grpc_call(s, "ModelInfer", infer_request())[0].code == grpc.StatusCode.UNAUTHENTICATED
    ctx, _ = grpc_call(s, "ModelInfer", infer_request(), [("authorization", "Bearer nope")])
    assert ctx.code == grpc.StatusCode.PERMISSION_DENIED and "nope" not in ctx.details
    ctx, reply = grpc_call(s, "ModelInfer", infer_request(), [("authorization", "Bearer inf")])
    assert ctx.code is None and reply.model_name == "clf"
    for method, req in [("ModelMetadata", pb.ModelMetadataRequest(name="clf")),
                        ("ModelReady", pb.ModelReadyRequest(name="clf")),
                        ("ServerMetadata", pb.ServerMetadataRequest()),
                        ("RepositoryIndex", pb.RepositoryIndexRequest())]:
        assert grpc_call(s, method, req)[0].code == grpc.StatusCode.UNAUTHENTICATED, method
    ctx, reply = grpc_call(s, "ServerLive", pb.ServerLiveRequest())
    assert ctx.code is None and reply.live
    load = pb.RepositoryModelLoadRequest(model_name="clf")
    assert grpc_call(s, "RepositoryModelLoad", load, [("authorization", "Bearer inf")])[0].code == \
        grpc.StatusCode.PERMISSION_DENIED
    assert grpc_call(s, "RepositoryModelLoad", load, [("authorization", "Bearer adm")])[0].code is None


# -- deadlines --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path, kw", [
    ("/v1/classify", {"json": {"texts": ["x"]}}),
    ("/v2/models/clf/infer", {"json": INFER}),
    ("/v1/models/clf:predict", {"json": {"instances": ["x"]}}),
])
def test_request_deadline_is_504_and_cancels_the_model_call(path, kw):
    slow = classifier(delay_s=30)
    r = request("POST", path, dp=dataplane(slow), headers={"X-Request-Timeout": "0.05"}, **kw)
    assert r.status_code == 504 and r.json()["kind"] == "deadline_exceeded"
    assert "0.05" in r.json()["error"]
    assert len(slow.calls) == 1 and slow.cancelled == 1, "the model call must be cancelled, not left running"


def test_configured_default_deadline_applies_without_a_header():
    config = {**CONFIG, "server": {"limits": {"request_timeout_s": 0.05, "max_request_timeout_s": 1}}}
    slow = classifier(delay_s=30)
    r = request("POST", "/v1/classify", dp=dataplane(slow, config), json={"texts": ["x"]})
    assert r.status_code == 504 and slow.cancelled == 1
    fast = request("POST", "/v1/classify", dp=dataplane(classifier(delay_s=0.01), config), json={"texts": ["x"]})
    assert fast.status_code == 200


@pytest.mark.parametrize("value", ["abc", "-1", "0", "nan", "inf", "1e999"])
def test_bad_timeout_header_is_400(value):
    r = request("POST", "/v1/classify", headers={"X-Request-Timeout": value}, json={"texts": ["x"]})
    assert r.status_code == 400 and "timeout" in r.json()["error"]


def test_deadline_is_capped_at_the_configured_maximum():
    dp = dataplane()
    assert dp.deadline_s(None) == 5 and dp.deadline_s("2.5") == 2.5 and dp.deadline_s("9999") == 10


def test_grpc_deadline_from_metadata():
    s = Servicer(dataplane(classifier(delay_s=30)))
    ctx, _ = grpc_call(s, "ModelInfer", infer_request(), [("x-request-timeout", "0.05")])
    assert ctx.code == grpc.StatusCode.DEADLINE_EXCEEDED
    ctx, _ = grpc_call(s, "ModelInfer", infer_request(), [("x-request-timeout", "soon")])
    assert ctx.code == grpc.StatusCode.INVALID_ARGUMENT


def test_timeout_default_above_maximum_is_a_config_error():
    with pytest.raises(ConfigError, match="request_timeout_s"):
        parse_config({"server": {"limits": {"request_timeout_s": 20, "max_request_timeout_s": 10}},
                      "models": CONFIG["models"]}, settings=GatewaySettings())


# -- backpressure and replica loss ------------------------------------------------------------------------------
def test_ray_backpressure_becomes_overloaded_with_retry_after():
    backend = HandleBackend(Handle(BackPressureError(num_queued_requests=4, max_queued_requests=4)))
    with pytest.raises(Overloaded) as err:
        asyncio.run(backend.infer(["x"], {}))
    assert "capacity" in err.value.message and "Queued" not in err.value.message
    r = request("POST", "/v1/classify", dp=dataplane(backend), json={"texts": ["x"]})
    assert r.status_code == 429 and r.headers["retry-after"] == "1" and r.json()["kind"] == "overloaded"
    ctx, _ = grpc_call(Servicer(dataplane(backend)), "ModelInfer", infer_request())
    assert ctx.code == grpc.StatusCode.RESOURCE_EXHAUSTED and ctx.trailing == [("retry-after", "1")]


def test_a_cancelled_handle_call_is_cancelled_in_ray_serve_too():
    response = SlowResponse()
    backend = HandleBackend(Handle(None))

    async def go():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(backend._call(response), 0.01)
    asyncio.run(go())
    assert response.cancelled


def test_a_lost_replica_is_a_retryable_503():
    backend = HandleBackend(Handle(ActorDiedError()))
    with pytest.raises(ModelNotReady):
        asyncio.run(backend.infer(["x"], {}))
    r = request("POST", "/v1/classify", dp=dataplane(backend), json={"texts": ["x"]})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "Actor" not in r.text and "Traceback" not in r.text
    ctx, _ = grpc_call(Servicer(dataplane(backend)), "ModelInfer", infer_request())
    assert ctx.code == grpc.StatusCode.UNAVAILABLE


def test_max_queued_requests_reaches_the_deployment_options():
    config = parse_config({"models": [{"name": "a", "task": "identity", "resources": {"max_queued_requests": 8}},
                                      {"name": "b", "task": "identity"}]}, settings=GatewaySettings())
    assert deployment_options(config.models[0], 0)["max_queued_requests"] == 8
    assert deployment_options(config.models[1], 0)["max_queued_requests"] == -1


# -- replica health ---------------------------------------------------------------------------------------------
def test_replica_reports_unhealthy_after_repeated_model_failures():
    from deployments.base import UNHEALTHY_AFTER_FAILURES, ModelDeployment
    from serve_app.metrics import NullMetrics

    replica = object.__new__(ModelDeployment)
    replica.name, replica.version, replica.failures_in_a_row = "m", "1", 0
    replica.metrics, replica.labels = NullMetrics(), {}

    def broken(texts):
        raise RuntimeError("device lost")

    for _ in range(UNHEALTHY_AFTER_FAILURES - 1):
        with pytest.raises(RuntimeError):
            asyncio.run(replica._run_flat([["x"]], broken))
    replica.check_health()  # a few failures are not yet a broken replica
    with pytest.raises(RuntimeError):
        asyncio.run(replica._run_flat([["x"]], broken))
    with pytest.raises(RuntimeError, match="model calls failed"):
        replica.check_health()
    assert asyncio.run(replica._run_flat([["a", "b"]], lambda flat: flat)) == [["a", "b"]]
    replica.check_health()  # one success clears it


# -- path traversal ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("parts", [("..",), ("clf", "..", ".."), ("../etc/passwd",), ("clf/../../x",), (".",),
                                   ("a\x00b",), ("/abs",)])
def test_store_paths_cannot_escape_the_store(tmp_path, parts):
    store = open_store(str(tmp_path / "store"))
    with pytest.raises(UnsafeArtifactError):
        store.path(*parts)


@pytest.mark.parametrize("selector", ["../../etc@1", "clf@../../etc", "clf/../x@1", "clf@sha256:../..",
                                      "clf@..", "..@1"])
def test_traversal_in_model_selectors_is_refused(tmp_path, selector):
    registry = Registry(str(tmp_path / "store"), cache_dir=tmp_path / "cache")
    with pytest.raises((SelectorError, UnsafeArtifactError, InvalidInput)):
        registry.resolve(selector)
    assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize("path", ["/v1/admin/models/clf/versions/..%2F..%2Fetc/load",
                                  "/v1/admin/models/clf/versions/1%2F..%2F..%2Fx/load",
                                  "/v1/admin/models/..%2F..%2Fetc/versions/1/load",
                                  "/v1/admin/models/clf/versions/..%5C..%5Cetc/load",
                                  "/v2/repository/models/..%2Fetc/load",
                                  "/v2/repository/models/clf/load"])  # the version ../../etc in the body
def test_traversal_through_the_admin_api_is_a_4xx(tmp_path, path):
    from deployments.router import ServeModelManager

    config = parse_config({**CONFIG, "registry": {"uri": str(tmp_path / "store")}}, settings=GatewaySettings())
    routes = {"clf": ModelRoutes("clf")}
    routes["clf"].add("1", classifier(), 1.0)
    dp = DataPlane(config, routes, ServeModelManager(config, 0.0))
    r = request("POST", path, dp=dp, json={"parameters": {"version": "../../etc"}})
    assert 400 <= r.status_code < 500 and "error" in r.json(), r.text
    assert not (tmp_path / "etc").exists()
