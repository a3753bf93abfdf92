"""Inference and admin tokens on HTTP and gRPC, over the in-process app and a fake gRPC context."""

from __future__ import annotations

import logging

import grpc
import pytest
from support.inprocess import INFER, bearer, dataplane, infer_request, request
from support.servers import Servicer, grpc_call

from serve_app.protocols.auth import admin_token_for
from serve_app.protocols.grpc_stubs import service_pb2 as pb

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


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "gateway.example"])
def test_admin_is_closed_without_a_token_unless_on_loopback(host):
    closed = admin_token_for(None, host)
    load = "/v1/admin/models/clf/versions/2/load"
    r = request("POST", load, admin=closed, headers=bearer("anything"))
    assert r.status_code == 403 and "GATEWAY_ADMIN_TOKEN" in r.json()["error"], r.text
    assert request("POST", "/v2/repository/models/clf/load", admin=closed).status_code == 403
    assert request("POST", "/v1/classify", admin=closed, json={"texts": ["x"]}).status_code == 200
    ctx, _ = grpc_call(Servicer(dataplane(), admin_token=closed), "RepositoryModelLoad",
                       pb.RepositoryModelLoadRequest(model_name="clf"))
    assert ctx.code == grpc.StatusCode.PERMISSION_DENIED and "GATEWAY_ADMIN_TOKEN" in ctx.details
    assert admin_token_for("tok", host) == "tok"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_admin_stays_open_without_a_token_on_loopback(host):
    assert admin_token_for(None, host) is None
    assert request("POST", "/v1/admin/models/clf/versions/2/load", admin=admin_token_for(None, host)).status_code == 200


def test_tokens_are_never_logged(caplog):
    caplog.set_level(logging.DEBUG)
    request("POST", "/v1/classify", inference="very-secret", headers=bearer("also-secret"), json={"texts": ["x"]})
    request("POST", "/v1/classify", inference="very-secret", headers=bearer("very-secret"), json={"texts": ["x"]})
    assert "secret" not in caplog.text


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
