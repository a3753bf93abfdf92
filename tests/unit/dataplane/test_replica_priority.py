"""A model replica runs low-class batches at the lowest OS priority (deployments/base.py: SCHED_IDLE, and
LOW_CLASS_NICE): under overload they take only the CPU that the gateway's front and higher classes leave."""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from serve_app.dataplane.priority import HIGH, LOW, LOW_CLASS_NICE, NORMAL

pytestmark = pytest.mark.skipif(not hasattr(os, "getpriority"), reason="thread niceness is a Linux feature")


def _replica(predict, threads: int = 2, concurrent: int = 2):
    """A ModelDeployment shell with the replica's own pools and batcher around `predict`."""
    from deployments.base import ModelDeployment, start_low_thread
    from serve_app.dataplane.batching import EXPRESS, SlotBatcher
    from serve_app.metrics import NullMetrics
    from serve_app.runtime.step_aside import StepAside

    replica = object.__new__(ModelDeployment)
    replica.name, replica.version, replica.failures_in_a_row = "m", "1", 0
    replica.metrics, replica.labels, replica.in_flight, replica.threads = NullMetrics(), {}, 0, threads
    replica._pool = ThreadPoolExecutor(max_workers=concurrent + EXPRESS)
    replica.step_aside = StepAside()
    replica._low_pool = ThreadPoolExecutor(max_workers=concurrent, initializer=start_low_thread,
                                           initargs=(replica.step_aside,))
    replica._running_low = 0
    replica._predict = predict
    replica.batcher = SlotBatcher(replica._run_batch, 16, concurrent, 0.0)
    return replica


def _seen(log: list, gate: threading.Event | None = None):
    """predict: records (text, (scheduling policy, niceness) of its thread, torch's thread count), holding a batch
    whose text starts with "hold" until `gate` is set."""
    import torch

    def predict(texts):
        if gate is not None and texts[0].startswith("hold"):
            gate.wait(10)
        tid = threading.get_native_id()
        log.append((texts[0], (os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid)),
                    torch.get_num_threads()))
        return texts
    return predict


def test_low_class_batches_run_at_idle_priority_and_the_others_at_the_processs():
    own = os.getpriority(os.PRIO_PROCESS, 0)
    log: list = []
    replica = _replica(_seen(log))

    async def go():
        for text, cls in (("low", LOW), ("normal", NORMAL), ("high", HIGH)):
            assert await replica.batcher.submit([text], cls) == [text]
    asyncio.run(go())
    seen = {text: priority for text, priority, _ in log}
    assert seen["low"] == (os.SCHED_IDLE, LOW_CLASS_NICE)
    assert seen["normal"] == seen["high"] == (os.sched_getscheduler(0), own)


def test_a_high_batch_beside_a_running_low_batch_gets_every_thread_and_beside_a_normal_one_shares():
    log: list = []
    gate = threading.Event()
    replica = _replica(_seen(log, gate), threads=2)

    async def go():
        held_low = asyncio.ensure_future(replica.batcher.submit(["hold low"], LOW))
        await asyncio.sleep(0.2)  # the low batch is running (held)
        assert await replica.batcher.submit(["high"], HIGH) == ["high"]
        held_normal = asyncio.ensure_future(replica.batcher.submit(["hold normal"], NORMAL))
        await asyncio.sleep(0.2)
        assert await replica.batcher.submit(["high again"], HIGH) == ["high again"]
        gate.set()
        await asyncio.gather(held_low, held_normal)
    asyncio.run(go())
    threads = {text: n for text, _, n in log}
    assert threads["high"] == 2  # the idle-priority low batch beside it does not count
    assert threads["high again"] == 1  # beside a normal-class batch: one thread each


def test_a_low_batch_steps_aside_while_a_high_batch_runs_beside_it():
    """The replica marks its low-class threads and holds the gate around every other run (runtime/step_aside.py):
    a low batch at a checkpoint (as between the model's blocks) waits until the high batch beside it is done."""
    gate, finished = threading.Event(), []

    def predict(texts):
        if texts[0] == "hold high":
            gate.wait(10)
        else:
            replica.step_aside.checkpoint()
        finished.append(texts[0])
        return texts
    replica = _replica(predict)

    async def go():
        high = asyncio.ensure_future(replica.batcher.submit(["hold high"], HIGH))
        await asyncio.sleep(0.2)
        low = asyncio.ensure_future(replica.batcher.submit(["low"], LOW))
        await asyncio.sleep(0.3)
        assert finished == [] and replica.step_aside.pauses == 1  # the low batch waits at its checkpoint
        gate.set()
        await asyncio.gather(high, low)
    asyncio.run(go())
    assert finished == ["hold high", "low"]
