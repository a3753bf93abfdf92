"""A gateway with auth tokens over identity models (no weights), for the reliability tests on a real Ray Serve
(tests/integration/test_reliability_ray.py, test_overload_ray.py): its config, deploying it with the tokens,
OIP bodies over HTTP and gRPC, and the model replicas' own call counts."""

from __future__ import annotations

import time

import grpc
import pytest

from deployments.apps import version_app
from deployments.assemble import gateway_app
from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.plan import GATEWAY_APP, plan_versions
from support.serve import call_deployment

CPU = {"num_cpus": 0.1, "num_gpus": 0}
INFERENCE_TOKEN = "inference-token-for-tests"
ADMIN_TOKEN = "admin-token-for-tests"
AUTH = {"Authorization": f"Bearer {INFERENCE_TOKEN}"}
ECHO_DELAY_S = 0.5
MODELS = {
    # Capacity 4 / 0.5 s = 8 requests/s (low, so a 2-core machine's proxy is not the bottleneck);
    # at most one more may wait (by count, at Ray's router), and none whose expected wait for a slot is
    # over 0.1 s (by time, at the gateway's admission: serve_app/dataplane/admission.py); the rest are refused at once.
    "echo": {"task": "identity", "delay_ms": ECHO_DELAY_S * 1000,
             "resources": {**CPU, "max_ongoing_requests": 4, "max_queued_requests": 1, "max_queue_wait_s": 0.1}},
    "slow": {"task": "identity", "delay_ms": 5000, "resources": CPU},
    "fast": {"task": "identity", "resources": CPU},
    "victim": {"task": "identity", "delay_ms": 100, "resources": {**CPU, "replicas": 2, "max_ongoing_requests": 8}},
}


def secured_config(*models: str):
    """The config serving `models` (names from MODELS), with deadlines of 10 s by default and 20 s at most."""
    return parse_config({"server": {"limits": {"request_timeout_s": 10, "max_request_timeout_s": 20}},
                         "models": [{"name": name, **MODELS[name]} for name in models]}, settings=GatewaySettings())


def deploy_with_tokens(config):
    """Like deployments.assemble.deploy, with the tokens in the ingress replica's environment (as GATEWAY_* settings)."""
    from ray import serve

    plans = plan_versions(config)
    targets = [serve.RunTarget(version_app(config.model(p.model), p.spec, 0.0), name=p.app_name, route_prefix=None)
               for p in plans]
    env = {"GATEWAY_INFERENCE_TOKEN": INFERENCE_TOKEN, "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}
    targets.append(serve.RunTarget(gateway_app(config, plans, 0.0, env), name=GATEWAY_APP, route_prefix="/"))
    serve.run_many(targets)


def infer_body(*texts):
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": list(texts)}]}


def grpc_infer(target: str, model: str, metadata=(), timeout=30):
    from serve_app.protocols.grpc_stubs import service_pb2 as pb
    from serve_app.protocols.grpc_stubs import service_pb2_grpc as pb_grpc

    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        req = pb.ModelInferRequest(model_name=model)
        req.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"hello")
        return stub.ModelInfer(req, metadata=list(metadata), timeout=timeout)


def grpc_code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details()


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def stats(model: str) -> dict:
    return call_deployment(f"{model}--builtin", model, "stats")


def settled(model: str, timeout_s: float = 10) -> dict:
    """The model's counts once no call is in flight: a call an earlier test cancelled may still be unwinding
    (more so through HAProxy), and its late count must not be read as this test's."""
    deadline = time.monotonic() + timeout_s
    while True:
        s = stats(model)
        if s["started"] == s["finished"] + s["cancelled"] or time.monotonic() > deadline:
            return s
        time.sleep(0.05)
