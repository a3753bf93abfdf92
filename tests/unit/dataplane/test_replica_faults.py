"""Ray backpressure, cancelled and lost replicas mapped to 429/503 on HTTP and gRPC; replica health and queue
limits."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from ray.exceptions import ActorDiedError
from ray.serve.exceptions import BackPressureError
from support.inprocess import dataplane, infer_request, request
from support.servers import Handle, Servicer, SlowResponse, grpc_call

from deployments.handles import LOST_RETRIES, HandleBackend
from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.errors import ModelNotReady, Overloaded
from serve_app.plan import deployment_options


# -- backpressure and replica loss ------------------------------------------------------------------------------
def test_ray_backpressure_becomes_overloaded_with_retry_after():
    backend = HandleBackend(Handle(BackPressureError(num_queued_requests=4, max_queued_requests=4)))
    with pytest.raises(Overloaded) as err:
        asyncio.run(backend.infer(["x"], {}))
    assert "capacity" in err.value.message and "Queued" not in err.value.message
    r = request("POST", "/v1/classify", dp=dataplane(backend), json={"texts": ["x"]})
    assert r.status_code == 429 and r.headers["retry-after"] == "1" and r.json()["kind"] == "overloaded"
    ctx, _ = grpc_call(Servicer(dataplane(backend)), "ModelInfer", infer_request())
    assert ctx.code == grpc.StatusCode.RESOURCE_EXHAUSTED and dict(ctx.trailing)["retry-after"] == "1"


def test_a_cancelled_handle_call_is_cancelled_in_ray_serve_too():
    response = SlowResponse()
    backend = HandleBackend(Handle(None))

    async def go():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(backend._call(lambda: response), 0.01)
    asyncio.run(go())
    assert response.cancelled


def test_a_lost_replica_is_a_retryable_503_after_the_call_was_sent_again(monkeypatch):
    monkeypatch.setattr("deployments.handles.LOST_BACKOFF_S", (0.0, 0.0, 0.0))
    handle = Handle(ActorDiedError())
    backend = HandleBackend(handle)
    with pytest.raises(ModelNotReady):
        asyncio.run(backend.infer(["x"], {}))
    assert handle.calls == 1 + LOST_RETRIES
    r = request("POST", "/v1/classify", dp=dataplane(backend), json={"texts": ["x"]})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "Actor" not in r.text and "Traceback" not in r.text
    ctx, _ = grpc_call(Servicer(dataplane(backend)), "ModelInfer", infer_request())
    assert ctx.code == grpc.StatusCode.UNAVAILABLE


def test_a_call_lost_with_its_replica_is_answered_by_another(monkeypatch):
    """Inference is idempotent: a call whose replica died (its node went away) is sent again, and answered."""
    monkeypatch.setattr("deployments.handles.LOST_BACKOFF_S", (0.0, 0.0, 0.0))

    class Answer:
        def __await__(self):
            async def ok():
                return {"results": [{"label": "ok"}], "version": "1"}
            return ok().__await__()

    handle = Handle(ActorDiedError(), answer_after=2, answer=Answer)
    out = asyncio.run(HandleBackend(handle).infer(["x"], {}))
    assert out["results"] == [{"label": "ok"}] and handle.calls == 3


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


def _replica(predict):
    """A ModelDeployment shell around `predict` (flat texts -> results), with its batcher as the replica has it."""
    from concurrent.futures import ThreadPoolExecutor

    from deployments.base import ModelDeployment
    from serve_app.dataplane.batching import SlotBatcher
    from serve_app.metrics import NullMetrics
    from serve_app.runtime.step_aside import StepAside

    replica = object.__new__(ModelDeployment)
    replica.name, replica.version, replica.failures_in_a_row = "m", "1", 0
    replica.metrics, replica.labels, replica.in_flight, replica.threads = NullMetrics(), {}, 0, 1
    replica.step_aside = StepAside()
    replica._pool, replica._low_pool = ThreadPoolExecutor(max_workers=1), ThreadPoolExecutor(max_workers=1)
    replica._running_low = 0
    replica._predict = predict
    replica.batcher = SlotBatcher(replica._run_batch, 16, 1, 0.0, isolate=lambda err: True)
    return replica


def test_a_bad_input_fails_alone_with_a_400_and_never_counts_against_health():
    from deployments.base import UNHEALTHY_AFTER_FAILURES
    from serve_app.errors import InvalidInput

    def predict(texts):
        if any("\x00" in t for t in texts):
            raise ValueError("the tokenizer cannot take this")
        return [t.upper() for t in texts]

    replica = _replica(predict)

    async def main():
        return await asyncio.gather(*(replica._queue([f"ok{i}"]) for i in range(7)), replica._queue(["bad\x00"]),
                                    replica._queue(["ok7", "ok8"]), return_exceptions=True)

    for _ in range(UNHEALTHY_AFTER_FAILURES + 1):
        results = asyncio.run(main())
        assert results[:7] == [[f"OK{i}"] for i in range(7)] and results[8] == ["OK7", "OK8"]
        assert isinstance(results[7], InvalidInput) and "could not process" in results[7].message
    assert replica.failures_in_a_row == 0
    replica.check_health()


def test_a_broken_model_still_counts_and_is_reported_unhealthy():
    from deployments.base import UNHEALTHY_AFTER_FAILURES

    def predict(texts):
        raise RuntimeError("device lost")

    replica = _replica(predict)
    for _ in range(UNHEALTHY_AFTER_FAILURES):
        with pytest.raises(RuntimeError, match="device lost"):
            asyncio.run(replica._queue(["x"]))
    with pytest.raises(RuntimeError, match="model calls failed"):
        replica.check_health()
