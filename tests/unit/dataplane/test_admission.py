"""Admission against measured capacity (serve_app/dataplane/admission.py), on a fake clock, and through the dataplane."""

import asyncio
import math

import httpx
import pytest
from support.fakes import Clock, FakeBackend

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.dataplane import DataPlane
from serve_app.dataplane.admission import AdmissionController
from serve_app.dataplane.routing import ModelRoutes
from serve_app.errors import Overloaded
from serve_app.protocols.http_app import create_app


def served(ctl, clock, seconds, n=1):
    """Admit `n` requests and finish them `seconds` later."""
    tickets = [ctl.admit() for _ in range(n)]
    clock.now += seconds
    for t in tickets:
        t.done()


def test_service_time_is_learned_from_answers_and_nothing_is_refused_before():
    clock = Clock()
    ctl = AdmissionController("m", concurrency=2, max_wait_s=0.1, clock=clock)
    held = [ctl.admit() for _ in range(10)]  # no estimate yet: a cold model refuses nothing on time grounds
    assert ctl.held == 10 and ctl.expected_wait_s() == 0
    for t in held:
        t.done(ok=False)  # failures teach nothing about the service time
    assert ctl.held == 0 and ctl.service_s is None
    served(ctl, clock, 0.5)
    assert ctl.service_s == pytest.approx(0.5)
    for _ in range(30):
        served(ctl, clock, 1.0)
    assert ctl.service_s == pytest.approx(1.0, rel=0.01), "the estimate follows a change in service time"


def test_expected_wait_counts_the_queue_beyond_the_free_slots():
    clock = Clock()
    ctl = AdmissionController("m", concurrency=4, clock=clock)
    served(ctl, clock, 0.5)
    assert [ctl.expected_wait_s(h) for h in (0, 3, 4, 7, 11)] == [0, 0, 0.125, 0.5, 1.0]


def test_refuses_when_the_expected_wait_exceeds_the_limit_with_retry_after_from_the_queue():
    clock = Clock()
    ctl = AdmissionController("m", concurrency=4, max_wait_s=0.25, clock=clock)
    served(ctl, clock, 0.5)
    admitted = [ctl.admit() for _ in range(6)]  # 4 in slots, then waits of 0.125 and 0.25 s: within the limit
    with pytest.raises(Overloaded) as err:
        ctl.admit()  # would wait 3 x 0.5 / 4 = 0.375 s
    assert err.value.details["retry_after_s"] == pytest.approx(0.375) and "0.38 s" in err.value.message
    assert ctl.held == 6 and ctl.refused == 1, "a refused request holds no slot"
    admitted[0].done()
    assert ctl.admit().position == 2  # a slot freed: admitted again, behind two others


def test_a_request_is_refused_when_its_own_deadline_would_pass_while_waiting():
    clock = Clock()
    ctl = AdmissionController("m", concurrency=1, max_wait_s=None, clock=clock)
    served(ctl, clock, 1.0)
    ctl.admit()
    ctl.admit()  # waits ~1 s; deadline 5 s: fine
    ctl.admit(deadline_s=5.0)  # waits ~2 s, + 1 s service < 5 s
    with pytest.raises(Overloaded):
        ctl.admit(deadline_s=3.5)  # would wait ~3 s, + 1 s of service > 3.5 s
    ctl.admit(deadline_s=None)  # no deadline, no limit: the queue is only bounded by count (Ray's)


def test_position_corrects_the_service_sample_for_the_wait():
    """A request that waited behind a full set of slots took ~2 service times; it must not double the estimate."""
    clock = Clock()
    ctl = AdmissionController("m", concurrency=2, clock=clock)
    served(ctl, clock, 1.0)
    first = [ctl.admit(), ctl.admit()]
    queued = [ctl.admit(), ctl.admit()]  # positions 1 and 2
    clock.now += 1.0
    for t in first:
        t.done()
    clock.now += 1.0
    for t in queued:
        t.done()
    assert ctl.service_s == pytest.approx(1.0, rel=0.15)


def test_the_dataplane_refuses_with_429_and_a_retry_after_that_reflects_the_queue():
    config = parse_config({"models": [{"name": "clf", "task": "classification", "source": "x",
                                       "resources": {"max_ongoing_requests": 1, "max_queue_wait_s": 0.05}}]},
                          settings=GatewaySettings())
    routes = {"clf": ModelRoutes("clf")}
    routes["clf"].add("1", FakeBackend(delay_s=0.2, info={}), 1.0)
    dp = DataPlane(config, routes)
    app = create_app(lambda: dp)

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            first = await c.post("/v1/classify", json={"texts": ["x"]})  # measures the service time
            burst = await asyncio.gather(*(c.post("/v1/classify", json={"texts": ["x"]}) for _ in range(12)))
            return first, burst

    first, burst = asyncio.run(go())
    assert first.status_code == 200
    codes = [r.status_code for r in burst]
    assert set(codes) == {200, 429} and codes.count(200) <= 2, codes  # one running, at most one waiting briefly
    refused = [r for r in burst if r.status_code == 429]
    assert all(r.json()["kind"] == "overloaded" for r in refused)
    waits = [r.json()["retry_after_s"] for r in refused]
    assert min(waits) >= 0.19 and all(r.headers["retry-after"] == str(max(1, math.ceil(w)))
                                    for r, w in zip(refused, waits, strict=True))
    assert dp.table.admission.controllers[("clf", "1")].held == 0, "every slot is given back"
