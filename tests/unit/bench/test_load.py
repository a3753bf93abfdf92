"""The one load generator (serve_app/bench/load.py) and the soak's use of it, against fake calls and an httpx
mock transport: what is counted, what is kept, how many run at once, and when requests are sent."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from serve_app.bench.load import closed_loop, closed_loop_blocking, open_loop
from serve_app.bench.soak.load import Stream, measure_capacity, measure_mixed_capacity
from serve_app.bench.soak.targets import TEXTS, Target


def test_closed_loop_counts_failures_keeps_answers_and_stops_at_max_requests():
    in_flight, peak = 0, 0

    async def call(n: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.001)
        in_flight -= 1
        if n % 5 == 0:
            raise ValueError(f"bad {n}")
        return n * 10

    sample = asyncio.run(closed_loop(call, concurrency=4, max_requests=40))
    assert sample.requests == 32 and sample.errors == 8
    assert {n: answer for n, (_, answer) in sample.answers.items()} == {n: n * 10 for n in range(40) if n % 5}
    assert sample.first_error == "ValueError: bad 0"
    assert peak == 4  # never more in flight than clients
    assert sample.p50_ms <= sample.p95_ms <= sample.p99_ms
    assert "answers" not in sample.as_dict() and sample.as_dict()["errors"] == 8


def test_closed_loop_times_out_a_stuck_call_as_a_failure():
    async def call(n: int) -> None:
        await asyncio.sleep(10 if n == 0 else 0)

    sample = asyncio.run(closed_loop(call, concurrency=2, max_requests=4, timeout_s=0.2))
    assert sample.errors == 1 and sample.requests == 3 and sample.first_error.startswith("TimeoutError")


def test_blocking_calls_run_as_many_at_once_as_clients():
    """32 clients over a blocking call: asyncio's default pool (6 threads on 2 cores) would take ~6 rounds."""
    sample = closed_loop_blocking(lambda n: time.sleep(0.2) or n, concurrency=32, max_requests=32)
    assert sample.requests == 32 and sample.errors == 0
    assert sample.seconds < 0.6, sample


def test_open_loop_sends_on_schedule_whatever_the_answers():
    sent: dict[int, float] = {}
    ticks = []
    started = time.perf_counter()

    def one(n: int) -> None:
        sent[n] = time.perf_counter() - started
        time.sleep(0.3)  # slow answers must not slow the schedule

    elapsed = open_loop(one, rate=50, seconds=0.5, first=100, tick=lambda k, s: ticks.append(k), every_s=0.2)
    assert sorted(sent) == list(range(100, 125))
    assert all(sent[100 + i] >= i / 50 - 0.005 for i in range(25))  # never early
    assert sent[124] < 0.48 + 0.15  # and not held back by the 0.3 s answers
    assert elapsed >= 0.48 + 0.3  # waits for the last answer
    assert ticks and ticks == sorted(ticks)


def _client(handler) -> httpx.Client:
    return httpx.Client(base_url="http://gateway", transport=httpx.MockTransport(handler))


def _identity(request: httpx.Request) -> httpx.Response:
    import json
    text = json.loads(request.content)["inputs"][0]["data"][0]
    if text == TEXTS[3]:
        return httpx.Response(503, json={"error": "busy"})
    return httpx.Response(200, json={"outputs": [{"data": [text]}]})


def test_soak_capacity_counts_only_answered_calls():
    target = Target("http://gateway", "echo", "identity")
    with _client(_identity) as client:
        assert measure_capacity(client, target, seconds=0.3, workers=4) > 0
    with _client(lambda request: httpx.Response(503, json={"error": "busy"})) as client:
        assert measure_capacity(client, target, seconds=0.3, workers=4) == 0


def test_soak_mixed_capacity_is_bounded_by_its_slowest_kind():
    class Mixed(Target):
        kinds = [("fast", None), ("slow", None)]

        def call(self, client, text, i):
            if i % 2:
                time.sleep(0.02)
            return text, 0.0, 200

    capacity, per_kind = measure_mixed_capacity(_client(_identity), Mixed("http://gateway", "mix", "identity"),
                                                seconds=0.5, workers=2)
    assert set(per_kind) == {"fast", "slow"}
    assert capacity == pytest.approx(2 * min(per_kind.values()))


def test_soak_stream_checks_every_answer_against_its_reference():
    target = Target("http://gateway", "echo", "identity")
    reference = {(t,): t for t in TEXTS}
    reference[(TEXTS[1],)] = "something else"  # every request for text 1 gets a wrong answer
    with _client(_identity) as client:
        stream = Stream(client, target, reference)
        stream.run(rate=80, seconds=0.2)
    assert stream.sent == 16
    assert len(stream.errors) == 2 and set(stream.errors) == {503}  # text 3, twice
    assert len(stream.wrong) == 2 and len(stream.latencies) == 12
    assert stream.statuses == {"200": 14, "503": 2}
