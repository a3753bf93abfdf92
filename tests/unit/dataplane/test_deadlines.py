"""Request deadlines on HTTP and gRPC: a 504 that cancels the model call, defaults and caps from the config."""

from __future__ import annotations

import grpc
import pytest
from support.inprocess import CONFIG, INFER, classifier, dataplane, infer_request, request
from support.servers import Servicer, grpc_call

from serve_app.config import ConfigError, parse_config
from serve_app.config.settings import GatewaySettings


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
    assert dp.deadlines.deadline_s(None) == 5 and dp.deadlines.deadline_s("2.5") == 2.5 and dp.deadlines.deadline_s("9999") == 10


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
