"""Request priority (dataplane/priority.py): parsing in every protocol, the batcher serving the highest class
first and shedding the lowest, admission counting only what a class waits behind, metrics per class."""

from __future__ import annotations

import asyncio

import pytest
from support.fakes import FakeBackend, MemoryMetrics, chain_dataplane, labelled
from support.inprocess import dataplane, request
from support.servers import Servicer, grpc_call

from serve_app.dataplane.admission import AdmissionController
from serve_app.dataplane.batching import SlotBatcher
from serve_app.dataplane.priority import CURRENT, HIGH, LOW, NORMAL, parse_priority
from serve_app.errors import InvalidInput, Overloaded
from serve_app.protocols.grpc_stubs import service_pb2 as pb


@pytest.mark.parametrize("value, cls", [(None, NORMAL), ("high", HIGH), (" LOW ", LOW), (1, HIGH), ("3", LOW),
                                        (0, NORMAL), ("normal", NORMAL)])
def test_classes_by_name_or_number(value, cls):
    assert parse_priority(value) == cls


@pytest.mark.parametrize("value", ["urgent", 4, -1, True, 1.5, ""])
def test_anything_else_is_a_400_naming_the_field(value):
    with pytest.raises(InvalidInput) as err:
        parse_priority(value, "x-priority")
    assert err.value.details["field"] == "x-priority" and "high, normal or low" in err.value.message


def test_the_batcher_serves_the_highest_class_first():
    order = []

    async def run(items):
        order.extend(items)
        await asyncio.sleep(0.01)
        return items

    async def go():
        batcher = SlotBatcher(run, max_batch=1)
        first = asyncio.ensure_future(batcher.submit(["busy"]))
        await asyncio.sleep(0)  # it runs; the rest queue behind it
        waiting = [asyncio.ensure_future(batcher.submit([name], cls))
                   for name, cls in (("low", LOW), ("normal", NORMAL), ("high", HIGH), ("low2", LOW))]
        await asyncio.gather(first, *waiting)
        await batcher.close()

    asyncio.run(go())
    assert order == ["busy", "high", "normal", "low", "low2"]


def test_a_full_queue_sheds_its_newest_lowest_request_for_a_higher_one():
    async def run(items):
        await asyncio.sleep(0.05)
        return items

    async def go():
        batcher = SlotBatcher(run, max_batch=1, max_queued=2)
        busy = asyncio.ensure_future(batcher.submit(["busy"]))
        await asyncio.sleep(0)
        low1 = asyncio.ensure_future(batcher.submit(["low1"], LOW))
        low2 = asyncio.ensure_future(batcher.submit(["low2"], LOW))
        await asyncio.sleep(0)
        high = asyncio.ensure_future(batcher.submit(["high"], HIGH))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="low-priority request waiting was shed"):
            await low2
        normal = asyncio.ensure_future(batcher.submit(["normal"]))  # (high took the express run: room for one)
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="requests waiting"):  # full of normal and higher: refused itself
            await batcher.submit(["low3"], LOW)
        assert await high == ["high"] and await low1 == ["low1"] and await busy == ["busy"]
        assert await normal == ["normal"]
        await batcher.close()

    asyncio.run(go())


def test_admission_refuses_the_low_class_first():
    ctl = AdmissionController("m", concurrency=1, max_wait_s=1.5)
    ctl.service_s = 1.0
    tickets = [ctl.admit(priority=LOW) for _ in range(2)]  # the 2nd would wait 1 s: within 1.5
    with pytest.raises(Overloaded, match="low-priority request now would wait about 2.00 s"):
        ctl.admit(priority=LOW)
    high = ctl.admit(priority=HIGH)  # waits only for the slot a low one holds: 1 s
    assert ctl.refused_by_class == {HIGH: 0, NORMAL: 0, LOW: 1}
    assert ctl.held_by_class == {HIGH: 1, NORMAL: 0, LOW: 2}
    for t in [*tickets, high]:
        t.done()
    assert ctl.held == 0


def test_the_header_and_the_body_set_the_class_the_model_call_runs_under():
    seen = []

    def answer(texts):
        seen.append(CURRENT.get())
        return labelled()(texts)

    dp = dataplane(FakeBackend("1", answer))
    high = {"X-Priority": "high"}
    assert request("POST", "/v1/classify", dp=dp, json={"texts": ["x"]}, headers=high).status_code == 200
    assert request("POST", "/v1/classify", dp=dp, json={"texts": ["x"], "priority": "low"},
                   headers={"X-Priority": "high"}).status_code == 200  # the body wins
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"]}],
            "parameters": {"priority": 1}}
    assert request("POST", "/v2/models/clf/infer", dp=dp, json=body).status_code == 200
    assert seen == [HIGH, LOW, HIGH]
    r = request("POST", "/v1/classify", dp=dp, json={"texts": ["x"]}, headers={"X-Priority": "urgent"})
    assert r.status_code == 400 and r.json()["field"] == "x-priority"
    r = request("POST", "/v1/classify", dp=dp, json={"texts": ["x"], "priority": 7})
    assert r.status_code == 400 and r.json()["field"] == "priority"
    assert request("GET", "/healthz", dp=dp, headers={"X-Priority": "urgent"}).status_code == 200


def test_grpc_metadata_sets_the_class_and_metrics_count_per_class():
    dp = chain_dataplane(MemoryMetrics())
    req = pb.ModelInferRequest(model_name="clf")
    req.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"x")
    ctx, _ = grpc_call(Servicer(dp), "ModelInfer", req, [("x-priority", "low")])
    assert ctx.code is None, ctx.details
    m = dp.table.metrics
    assert m.total("gateway_priority_requests", model="clf", priority="low", outcome="answered") == 1
    req.parameters["priority"].string_param = "bogus"
    ctx, _ = grpc_call(Servicer(dp), "ModelInfer", req)
    assert ctx.code.name == "INVALID_ARGUMENT" and "priority" in ctx.details


def test_a_high_request_runs_alone_at_once_while_every_slot_is_busy_and_its_run_carries_its_class():
    runs = []

    async def run(items):
        runs.append((list(items), CURRENT.get()))
        await asyncio.sleep(0.2 if "bulk" in items[0] else 0.01)
        return items

    async def go():
        batcher = SlotBatcher(run, max_batch=8)  # one slot
        bulk = asyncio.ensure_future(batcher.submit(["bulk"], LOW))
        await asyncio.sleep(0.01)  # running
        queued = [asyncio.ensure_future(batcher.submit([f"n{i}"], NORMAL)) for i in range(3)]
        started = asyncio.get_running_loop().time()
        assert await batcher.submit(["urgent"], HIGH) == ["urgent"]
        waited = asyncio.get_running_loop().time() - started
        await asyncio.gather(bulk, *queued)
        await batcher.close()
        return waited

    waited = asyncio.run(go())
    assert waited < 0.1  # did not wait for the 0.2 s bulk run
    assert runs == [(["bulk"], LOW), (["urgent"], HIGH), (["n0", "n1", "n2"], NORMAL)]
