"""SlotBatcher: batches form when a slot frees, from everything queued; cancellation and errors reach callers."""

from __future__ import annotations

import asyncio

import pytest
from support.fakes import SlowBatch

from serve_app.dataplane.batching import SlotBatcher
from serve_app.errors import Overloaded


def run(coro):
    return asyncio.run(coro)


def test_requests_arriving_while_the_model_runs_fill_the_next_batch():
    async def main():
        model = SlowBatch()
        batcher = SlotBatcher(model, max_batch=16)
        first = asyncio.ensure_future(batcher.submit([-1]))
        await asyncio.sleep(0.01)  # running alone: with nothing queued a request does not wait for company
        results = await asyncio.gather(*(batcher.submit([i]) for i in range(32)))
        assert await first == [-2]
        assert results == [[2 * i] for i in range(32)]
        # The 32 that arrived while the model ran go in two full batches, not one batch per arrival window.
        assert [len(b) for b in model.batches] == [1, 16, 16]
        await batcher.close()

    run(main())


def test_no_load_means_no_wait():
    async def main():
        model = SlowBatch(delay_s=0)
        batcher = SlotBatcher(model, max_batch=16, max_concurrent=2)
        for i in range(3):
            assert await batcher.submit([i, i + 1]) == [2 * i, 2 * i + 2]
        assert [len(b) for b in model.batches] == [2, 2, 2]
        await batcher.close()

    run(main())


def test_runs_in_flight_never_exceed_max_concurrent():
    async def main():
        model = SlowBatch()
        batcher = SlotBatcher(model, max_batch=4, max_concurrent=2)
        await asyncio.gather(*(batcher.submit([i]) for i in range(40)))
        assert model.max_concurrent_seen == 2
        assert max(len(b) for b in model.batches) == 4
        assert sorted(x for b in model.batches for x in b) == list(range(40))
        await batcher.close()

    run(main())


def test_a_request_larger_than_max_batch_runs_alone_and_whole():
    async def main():
        model = SlowBatch(delay_s=0)
        batcher = SlotBatcher(model, max_batch=4)
        assert await batcher.submit(list(range(10))) == [2 * x for x in range(10)]
        assert [len(b) for b in model.batches] == [10]
        await batcher.close()

    run(main())


def test_a_cancelled_queued_request_never_reaches_the_model():
    async def main():
        model = SlowBatch()
        batcher = SlotBatcher(model, max_batch=16)
        first = asyncio.ensure_future(batcher.submit(["first"]))
        await asyncio.sleep(0.01)  # "first" is running
        doomed = asyncio.ensure_future(batcher.submit(["doomed"]))
        kept = asyncio.ensure_future(batcher.submit(["kept"]))
        await asyncio.sleep(0.01)
        doomed.cancel()
        assert await first == ["firstfirst"]
        assert await kept == ["keptkept"]
        assert all("doomed" not in b for b in model.batches)
        await batcher.close()

    run(main())


def test_a_batch_whose_callers_all_left_is_cancelled():
    async def main():
        model = SlowBatch(delay_s=5)
        batcher = SlotBatcher(model, max_batch=16)
        calls = [asyncio.ensure_future(batcher.submit([i])) for i in range(2)]
        await asyncio.sleep(0.01)
        for c in calls:
            c.cancel()
        await asyncio.sleep(0.01)
        assert model.cancelled == 1
        assert batcher.running == 0
        await batcher.close()

    run(main())


def test_a_failing_run_fails_every_caller_of_that_batch_only():
    async def main():
        async def model(items):
            await asyncio.sleep(0.01)
            if "bad" in items:
                raise ValueError("model failed")
            return items

        batcher = SlotBatcher(model, max_batch=2)
        results = await asyncio.gather(batcher.submit(["x"]), batcher.submit(["bad"]), batcher.submit(["ok0"]),
                                       batcher.submit(["ok1"]), return_exceptions=True)
        assert isinstance(results[0], ValueError) and isinstance(results[1], ValueError)  # batch 1: x, bad
        assert results[2:] == [["ok0"], ["ok1"]]  # batch 2 is untouched
        await batcher.close()

    run(main())


def test_with_isolation_only_the_bad_request_of_a_failed_batch_fails():
    async def main():
        calls = []

        async def model(items):
            calls.append(list(items))
            await asyncio.sleep(0.01)
            if "bad" in items:
                raise ValueError("model failed")
            return [x.upper() for x in items]

        batcher = SlotBatcher(model, max_batch=16, isolate=lambda err: isinstance(err, ValueError))
        results = await asyncio.gather(batcher.submit(["first"]), *(batcher.submit([f"ok{i}"]) for i in range(6)),
                                       batcher.submit(["bad"]), batcher.submit(["ok6", "ok7"]),
                                       return_exceptions=True)
        assert results[0] == ["FIRST"]
        assert results[1:7] == [[f"OK{i}"] for i in range(6)]
        assert isinstance(results[7], ValueError) and results[8] == ["OK6", "OK7"]
        assert calls[0] == ["first", *(f"ok{i}" for i in range(6)), "bad", "ok6", "ok7"]  # one batch failed...
        assert calls[1:] == [["first"], *([f"ok{i}"] for i in range(6)), ["bad"], ["ok6", "ok7"]]  # ...each alone
        await batcher.close()

    run(main())


def test_isolation_is_not_applied_to_errors_it_does_not_name():
    async def main():
        calls = []

        async def model(items):
            calls.append(list(items))
            await asyncio.sleep(0.01)
            raise Overloaded("busy")

        batcher = SlotBatcher(model, max_batch=4, isolate=lambda err: not isinstance(err, Overloaded))
        first = asyncio.ensure_future(batcher.submit(["a"]))
        await asyncio.sleep(0)
        results = await asyncio.gather(batcher.submit(["b"]), batcher.submit(["c"]), return_exceptions=True)
        assert all(isinstance(r, Overloaded) for r in results)
        assert calls == [["a"], ["b", "c"]], "an overloaded batch must not be retried request by request"
        with pytest.raises(Overloaded):
            await first
        await batcher.close()

    run(main())


def test_a_wrong_number_of_results_is_an_error_not_a_misalignment():
    async def main():
        async def model(items):
            return items[:-1]

        batcher = SlotBatcher(model, max_batch=4)
        with pytest.raises(RuntimeError, match="results for"):
            await batcher.submit([1, 2])
        await batcher.close()

    run(main())


def test_a_full_queue_refuses_with_overloaded():
    async def main():
        model = SlowBatch(delay_s=0.05)
        batcher = SlotBatcher(model, max_batch=1, max_queued=2)
        running = asyncio.ensure_future(batcher.submit([0]))
        await asyncio.sleep(0.01)
        waiting = [asyncio.ensure_future(batcher.submit([i])) for i in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as err:
            await batcher.submit([3])
        assert err.value.details["retry_after_s"] >= 1
        assert await running == [0]
        assert [await w for w in waiting] == [[2], [4]]
        await batcher.close()

    run(main())


def test_a_wait_window_tops_up_a_batch_when_a_slot_is_free():
    async def main():
        model = SlowBatch(delay_s=0)
        batcher = SlotBatcher(model, max_batch=4, wait_s=0.2)
        first = asyncio.ensure_future(batcher.submit([0]))
        await asyncio.sleep(0.02)
        rest = [asyncio.ensure_future(batcher.submit([i])) for i in (1, 2, 3)]
        await asyncio.gather(first, *rest)
        assert [len(b) for b in model.batches] == [4]  # the window closed early once the batch was full
        await batcher.close()

    run(main())


def test_on_batch_sees_each_batch_size():
    async def main():
        seen = []
        batcher = SlotBatcher(SlowBatch(), max_batch=8, on_batch=lambda n, running: seen.append((n, running)))
        await asyncio.gather(*(batcher.submit([i, i]) for i in range(5)))
        assert seen == [(8, 1), (2, 1)]  # four requests of two items fill the first batch
        await batcher.close()

    run(main())


def test_notes_tell_a_request_its_batch_size_and_its_wait_in_the_queue():
    async def main():
        model = SlowBatch(delay_s=0.05)
        batcher = SlotBatcher(model, max_batch=16)
        first_notes, later_notes = {}, {}
        first = asyncio.ensure_future(batcher.submit([0], notes=first_notes))
        await asyncio.sleep(0.01)  # the first runs alone; the next three wait for it, then run together
        await asyncio.gather(first, batcher.submit([1, 2], notes=later_notes), batcher.submit([3]), batcher.submit([4]))
        assert first_notes["batch_items"] == 1 and first_notes["queue_wait_s"] < 0.01
        assert later_notes["batch_items"] == 4 and 0.03 <= later_notes["queue_wait_s"] < 1
        await batcher.close()

    run(main())
