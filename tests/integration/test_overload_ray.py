"""Overload and replica loss on a real Ray Serve over loopback, with identity models (no weights): backpressure
at 4x capacity over HTTP and gRPC, and kill -9 of a model replica under load."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import threading
import time

import grpc
import httpx
import psutil
from support.reliability import AUTH, ECHO_DELAY_S, deploy_with_tokens, grpc_infer, infer_body, secured_config, wait_for
from support.serve import gateway_fixture

from serve_app.bench.stats import percentile

gateway = gateway_fixture(lambda: secured_config("echo", "victim"), timeout=30, headers=AUTH,
                          deploy=deploy_with_tokens)


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
    p99 = lambda xs: percentile(xs, 99)  # noqa: E731 - the bench's one percentile (nearest rank)
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
