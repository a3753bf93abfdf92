"""Reliability on a real Ray Serve over loopback, with identity models (no weights): auth on HTTP and gRPC,
deadlines and client disconnects cancelling the model call, backpressure at 4x capacity, and kill -9 of a
model replica under load."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import threading
import time

import grpc
import httpx
import numpy as np
import psutil
import pytest
from support.serve import call_deployment
from fuzz_strategies import FUZZ, check, encoded, headers, oip_bodies
from hypothesis import given, settings
from hypothesis import strategies as st

from serve_app.app import GATEWAY_APP, gateway_app, plan_versions, version_app
from serve_app.config import parse_config
from serve_app.settings import GatewaySettings

CPU = {"num_cpus": 0.1, "num_gpus": 0}
INFERENCE_TOKEN = "inference-token-for-tests"
ADMIN_TOKEN = "admin-token-for-tests"
AUTH = {"Authorization": f"Bearer {INFERENCE_TOKEN}"}
ECHO_DELAY_S = 0.5
CONFIG = {
    "server": {"limits": {"request_timeout_s": 10, "max_request_timeout_s": 20}},
    "models": [
        # Capacity 4 / 0.5 s = 8 requests/s (low, so a 2-core machine's proxy is not the bottleneck);
        # at most one more may wait (by count, at Ray's router), and none whose expected wait for a slot is
        # over 0.1 s (by time, at the gateway's admission: serve_app/admission.py); the rest are refused at once.
        {"name": "echo", "task": "identity", "delay_ms": ECHO_DELAY_S * 1000,
         "resources": {**CPU, "max_ongoing_requests": 4, "max_queued_requests": 1, "max_queue_wait_s": 0.1}},
        {"name": "slow", "task": "identity", "delay_ms": 5000, "resources": CPU},
        {"name": "fast", "task": "identity", "resources": CPU},
        {"name": "victim", "task": "identity", "delay_ms": 100,
         "resources": {**CPU, "replicas": 2, "max_ongoing_requests": 8}},
    ],
}


def deploy_with_tokens(config):
    """Like support.serve.deployed, with the tokens in the ingress replica's environment (as GATEWAY_* settings)."""
    from ray import serve

    plans = plan_versions(config)
    targets = [serve.RunTarget(version_app(config.model(p.model), p.spec, 0.0), name=p.app_name, route_prefix=None)
               for p in plans]
    env = {"GATEWAY_INFERENCE_TOKEN": INFERENCE_TOKEN, "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}
    targets.append(serve.RunTarget(gateway_app(config, plans, 0.0, env), name=GATEWAY_APP, route_prefix="/"))
    serve.run_many(targets)


@pytest.fixture(scope="module")
def gateway(serve_session):
    from ray import serve

    deploy_with_tokens(parse_config(CONFIG, settings=GatewaySettings()))
    try:
        with httpx.Client(base_url=serve_session, timeout=30, headers=AUTH) as client:
            yield client
    finally:
        for name in serve.status().applications:
            serve.delete(name)


def infer_body(*texts):
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": list(texts)}]}


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


def test_inference_token_over_grpc_metadata(gateway, grpc_target):
    assert grpc_code(lambda: grpc_infer(grpc_target, "echo"))[0] == grpc.StatusCode.UNAUTHENTICATED
    code, details = grpc_code(lambda: grpc_infer(grpc_target, "echo", [("authorization", "Bearer nope")]))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "nope" not in details
    reply = grpc_infer(grpc_target, "echo", [("authorization", AUTH["Authorization"])])
    assert reply.model_name == "echo" and reply.raw_output_contents[0].endswith(b"hello")


# -- deadlines and cancellation ---------------------------------------------------------------------------------
def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s} s: {what}")


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


# -- backpressure -----------------------------------------------------------------------------------------------
def timed_post(client, url, body):
    started = time.perf_counter()
    r = client.post(url, json=body)
    return r, time.perf_counter() - started


def test_overload_at_4x_capacity_is_refused_fast_and_accepted_latency_holds(gateway, serve_session):
    url = "/v2/models/echo/infer"
    unloaded = [timed_post(gateway, url, infer_body("u"))[1] for _ in range(8)]
    capacity_rps = 4 / ECHO_DELAY_S
    rate, seconds = 4 * capacity_rps, 4.0
    results = []
    with httpx.Client(base_url=serve_session, headers=AUTH, timeout=30,
                      limits=httpx.Limits(max_connections=200)) as client, \
            concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
        futures, start = [], time.perf_counter()
        for i in range(int(rate * seconds)):  # open loop: sends on schedule whatever the answers
            time.sleep(max(0.0, start + i / rate - time.perf_counter()))
            futures.append(pool.submit(timed_post, client, url, infer_body(f"t{i}")))
        results = [f.result() for f in futures]
    statuses = {r.status_code for r, _ in results}
    assert statuses <= {200, 429}, statuses
    accepted = [(r, s) for r, s in results if r.status_code == 200]
    refused = [(r, s) for r, s in results if r.status_code == 429]
    assert accepted and refused
    for r, _ in refused:
        assert r.headers["retry-after"] == "1" and r.json()["kind"] == "overloaded"
    for i, (r, _) in enumerate(results):
        if r.status_code == 200:
            assert r.json()["outputs"][0]["data"] == [f"t{i}"]
    p99 = lambda xs: float(np.percentile(xs, 99))  # noqa: E731
    report = {"unloaded_p99_s": p99(unloaded), "accepted_p99_s": p99([s for _, s in accepted]),
              "refused_p99_s": p99([s for _, s in refused]), "accepted": len(accepted), "refused": len(refused),
              "sent": len(results), "accepted_rps": len(accepted) / seconds}
    print("overload at 4x capacity:", report, sorted(round(s, 2) for _, s in accepted))
    assert report["refused_p99_s"] < 0.5, report
    # R4: accepted p99 within 2x the unloaded p99. Admission by expected wait (max_queue_wait_s) admits only
    # what a slot can take within 0.1 s, so accepted requests barely queue: measured 0.98x on 2 shared cores
    # (it was 1.7x-2.5x with the count bound alone, a queued request waiting for the next free slot).
    assert report["accepted_p99_s"] <= 2 * report["unloaded_p99_s"], report
    assert report["accepted_rps"] >= 0.75 * capacity_rps, "admission must not starve the model"


def test_overload_over_grpc_is_resource_exhausted(gateway, grpc_target):
    md = [("authorization", AUTH["Authorization"])]
    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        futures = [pool.submit(grpc_code_or_ok, grpc_target, md) for _ in range(24)]
        codes = [f.result() for f in futures]
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes and grpc.StatusCode.OK in codes


def grpc_code_or_ok(target, md):
    try:
        grpc_infer(target, "echo", md)
        return grpc.StatusCode.OK
    except grpc.RpcError as err:
        return err.code()


# -- fuzz over real HTTP ----------------------------------------------------------------------------------------
@settings(FUZZ, max_examples=150)
@given(name=st.sampled_from(["fast", "fast", "ghost", "stc"]), raw=encoded(oip_bodies()), hdrs=headers,
       route=st.sampled_from(["oip", "tf", "simple"]))
def test_fuzz_over_real_http_has_no_5xx(gateway, name, raw, hdrs, route):
    """A smaller fuzz through Ray Serve's proxy and the real ingress (the unit fuzz runs 1070 cases in-process)."""
    path = {"oip": f"/v2/models/{name}/infer", "tf": f"/v1/models/{name}:predict", "simple": "/v1/classify"}[route]
    check(gateway.post(path, content=raw, headers={**AUTH, **hdrs}), f"ray-{route}")


# -- replica faults ---------------------------------------------------------------------------------------------
def replica_pids(model: str) -> set[int]:
    """Model replicas found by the process title Ray gives them: ray::ServeReplica:<app>:<deployment>."""
    title = f"ServeReplica:{model}--builtin:{model}"
    pids = set()
    for p in psutil.process_iter(["cmdline"]):
        if any(title in part for part in p.info["cmdline"] or []):
            pids.add(p.pid)
    return pids


def running_replicas(model: str) -> int:
    from ray import serve

    status = serve.status().applications[f"{model}--builtin"].deployments[model]
    return status.replica_states.get("RUNNING", 0) if status.status == "HEALTHY" else 0


def test_kill_9_of_a_replica_under_load_fails_only_in_flight_requests(gateway, serve_session):
    old = replica_pids("victim")
    assert len(old) == 2, old
    deadline_s, concurrency = 5.0, 8
    outcomes, stop, killed_at = [], threading.Event(), []

    def client_loop(worker: int):
        with httpx.Client(base_url=serve_session, headers={**AUTH, "X-Request-Timeout": str(deadline_s)},
                          timeout=deadline_s + 5) as client:
            i = 0
            while not stop.is_set():
                text, sent = f"w{worker}-{i}", time.monotonic()
                try:
                    r = client.post("/v2/models/victim/infer", json=infer_body(text))
                    ok = r.status_code == 200 and r.json()["outputs"][0]["data"] == [text]
                    outcomes.append((sent, time.monotonic(), r.status_code, ok, r.headers.get("retry-after")))
                except httpx.TimeoutException:
                    outcomes.append((sent, time.monotonic(), "hang", False, None))
                i += 1

    threads = [threading.Thread(target=client_loop, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    victim = sorted(old)[0]
    killed_at.append(time.monotonic())
    os.kill(victim, signal.SIGKILL)
    try:
        wait_for(lambda: len(replica_pids("victim") - old) == 1 and running_replicas("victim") == 2, 15,
                 "Ray Serve replaces the killed replica")
        recovery_s = time.monotonic() - killed_at[0]
        time.sleep(2.0)  # keep the load on the replaced pair
    finally:
        stop.set()
        for t in threads:
            t.join()
    kill = killed_at[0]
    failed = [o for o in outcomes if not (o[2] == 200 and o[3])]
    after = [o for o in outcomes if o[0] > kill + recovery_s]
    report = {"requests": len(outcomes), "failed": len(failed), "recovery_s": round(recovery_s, 2),
              "failed_statuses": sorted({str(o[2]) for o in failed}),
              "longest_s": round(max(o[1] - o[0] for o in outcomes), 2), "after_recovery": len(after)}
    print("replica kill:", report)
    assert all(o[2] == 503 and o[4] == "1" for o in failed), "failures must be retryable 503s with Retry-After"
    assert all(o[0] < kill for o in failed), "only requests in flight at the kill may fail"
    assert len(failed) <= concurrency
    assert all(o[1] - o[0] < deadline_s + 1 for o in outcomes), "no request may hang past its deadline"
    assert after and all(o[2] == 200 and o[3] for o in after)
    assert victim not in replica_pids("victim")
