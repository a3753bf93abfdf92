"""Reliability on a real Ray Serve over loopback, with identity models (no weights): auth on HTTP and gRPC,
deadlines and client disconnects cancelling the model call, and a fuzz through the real proxy and ingress.
Overload and replica loss: test_overload_ray.py."""

from __future__ import annotations

import time

import grpc
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.fuzz_strategies import FUZZ, check, encoded, headers, oip_bodies
from support.reliability import (
    AUTH,
    deploy_with_tokens,
    grpc_code,
    grpc_infer,
    infer_body,
    secured_config,
    settled,
    stats,
    wait_for,
)
from support.serve import gateway_fixture

gateway = gateway_fixture(lambda: secured_config("echo", "slow", "fast"), timeout=30, headers=AUTH,
                          deploy=deploy_with_tokens)


# -- auth -------------------------------------------------------------------------------------------------------
def test_inference_and_admin_tokens_over_http(gateway):
    url = "/v2/models/echo/infer"
    assert gateway.post(url, json=infer_body("x"), headers={"Authorization": ""}).status_code == 401
    wrong = gateway.post(url, json=infer_body("x"), headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and wrong.json()["kind"] == "permission_denied"
    ok = gateway.post(url, json=infer_body("x"))
    assert ok.status_code == 200 and ok.json()["outputs"][0]["data"] == ["x"]
    assert gateway.get("/healthz", headers={"Authorization": ""}).status_code == 200
    load = "/v1/admin/models/echo/versions/1/load"
    assert gateway.post(load).status_code == 403, "the inference token must not open admin endpoints"
    assert gateway.post(load, headers={"Authorization": ""}).status_code == 401


def test_inference_token_over_grpc_metadata(gateway, grpc_target):
    assert grpc_code(lambda: grpc_infer(grpc_target, "echo"))[0] == grpc.StatusCode.UNAUTHENTICATED
    code, details = grpc_code(lambda: grpc_infer(grpc_target, "echo", [("authorization", "Bearer nope")]))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "nope" not in details
    reply = grpc_infer(grpc_target, "echo", [("authorization", AUTH["Authorization"])])
    assert reply.model_name == "echo" and reply.raw_output_contents[0].endswith(b"hello")


# -- deadlines and cancellation ---------------------------------------------------------------------------------
def test_deadline_is_504_and_cancels_the_model_call(gateway):
    before = settled("slow")
    started = time.perf_counter()
    r = gateway.post("/v2/models/slow/infer", json=infer_body("x"), headers={"X-Request-Timeout": "0.5"})
    elapsed = time.perf_counter() - started
    assert r.status_code == 504 and r.json()["kind"] == "deadline_exceeded", r.text
    assert elapsed < 4, "the 5 s model call must not run to its end"
    wait_for(lambda: stats("slow")["cancelled"] == before["cancelled"] + 1, 5, "the model call is cancelled")
    assert stats("slow")["finished"] == before["finished"]


def test_grpc_deadline_metadata_is_deadline_exceeded(gateway, grpc_target):
    md = [("authorization", AUTH["Authorization"]), ("x-request-timeout", "0.5")]
    assert grpc_code(lambda: grpc_infer(grpc_target, "slow", md))[0] == grpc.StatusCode.DEADLINE_EXCEEDED


def test_grpc_client_deadline_cancels_the_model_call(gateway, grpc_target):
    before = settled("slow")
    md = [("authorization", AUTH["Authorization"])]
    assert grpc_code(lambda: grpc_infer(grpc_target, "slow", md, timeout=0.5))[0] == \
        grpc.StatusCode.DEADLINE_EXCEEDED
    wait_for(lambda: stats("slow")["cancelled"] == before["cancelled"] + 1, 4, "the model call is cancelled")


def test_client_disconnect_cancels_the_model_call(gateway, serve_session):
    before = settled("slow")
    with httpx.Client(base_url=serve_session, headers=AUTH, timeout=0.5) as impatient:
        with pytest.raises(httpx.TimeoutException):
            impatient.post("/v2/models/slow/infer", json=infer_body("x"))
    # Ray Serve's proxy sees the disconnect and cancels the ingress call, which cancels the model call.
    wait_for(lambda: stats("slow")["cancelled"] == before["cancelled"] + 1, 4,
             f"the model call is cancelled (before: {before})")
    assert stats("slow")["finished"] == before["finished"]


# -- fuzz over real HTTP ----------------------------------------------------------------------------------------
@settings(FUZZ, max_examples=150)
@given(name=st.sampled_from(["fast", "fast", "ghost", "stc"]), raw=encoded(oip_bodies()), hdrs=headers,
       route=st.sampled_from(["oip", "tf", "simple"]))
def test_fuzz_over_real_http_has_no_5xx(gateway, name, raw, hdrs, route):
    """A smaller fuzz through Ray Serve's proxy and the real ingress (the unit fuzz runs 1070 cases in-process)."""
    path = {"oip": f"/v2/models/{name}/infer", "tf": f"/v1/models/{name}:predict", "simple": "/v1/classify"}[route]
    check(gateway.post(path, content=raw, headers={**AUTH, **hdrs}), f"ray-{route}")
