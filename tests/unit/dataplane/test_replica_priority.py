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
    from deployments.base import LOW_CLASS_NICE, ModelDeployment, lower_thread_priority
    from serve_app.dataplane.batching import EXPRESS, SlotBatcher
    from serve_app.metrics import NullMetrics

    replica = object.__new__(ModelDeployment)
    replica.name, replica.version, replica.failures_in_a_row = "m", "1", 0
    replica.metrics, replica.labels, replica.in_flight, replica.threads = NullMetrics(), {}, 0, threads
    replica._pool = ThreadPoolExecutor(max_workers=concurrent + EXPRESS)
    replica._low_pool = ThreadPoolExecutor(max_workers=concurrent, initializer=lower_thread_priority,
                                           initargs=(LOW_CLASS_NICE,))
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
