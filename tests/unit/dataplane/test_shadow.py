"""Shadow traffic (dataplane/shadow.py) over in-process fakes: callers see only the primary's answers, the mirror's
are compared, counted and dropped first; set and cleared through the admin API and the shared routing state."""

from __future__ import annotations

import asyncio
from functools import partial

import httpx
from support.fakes import Clock, FakeBackend, FakeManager, labelled

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.dataplane import DataPlane
from serve_app.dataplane.routing import ModelRoutes
from serve_app.dataplane.shadow import BUSY_DUTY
from serve_app.dataplane.shared_state import MemoryKV, SharedRoutes
from serve_app.protocols.http_app import create_app

CONFIG = {"models": [{"name": "clf", "task": "classification", "version": "1"}]}


def gateway(versions: dict[str, FakeBackend], kv: MemoryKV | None = None) -> tuple[DataPlane, httpx.AsyncClient]:
    """Version 1 serving all traffic; loading version N gives `versions[N]`."""
    routes = {"clf": ModelRoutes("clf")}
    routes["clf"].add("1", versions["1"], 1.0)
    manager = FakeManager(backend=lambda label: versions[label])
    dp = DataPlane(parse_config(CONFIG, settings=GatewaySettings()), routes, manager,
                   shared=SharedRoutes(kv or MemoryKV(), "gw"))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(lambda: dp)), base_url="http://t")
    return dp, client


async def shadowed(client: httpx.AsyncClient, share: float = 1.0) -> httpx.Response:
    assert (await client.post("/v1/admin/models/clf/versions/v2/load")).status_code == 200
    return await client.put("/v1/admin/models/clf/shadow", json={"version": "2", "share": share})


async def settle(dp: DataPlane) -> None:
    while dp.table.mirrors.tasks:
        await asyncio.sleep(0.01)


def test_callers_get_the_primary_and_the_mirror_is_compared():
    async def go():
        versions = {"1": FakeBackend("1", labelled("a")), "2": FakeBackend("2", labelled("b"))}
        dp, client = gateway(versions)
        async with client:
            r = await shadowed(client)
            assert r.status_code == 200 and r.json()["shadow"]["version"] == "2"
            for text in ("x", "y", "z"):
                r = await client.post("/v1/classify", json={"texts": [text]})
                assert r.headers["x-model-version"] == "1" and r.json()["results"][0]["label"] == "a"
            await settle(dp)
            shadow = (await client.get("/v1/models/clf")).json()["shadow"]
        assert shadow["disagreed"] == 3 and shadow["agreed"] == 0 and shadow["agreement"] == 0.0
        assert [texts for texts, _ in versions["2"].calls] == [["x"], ["y"], ["z"]]

    asyncio.run(go())


def test_a_slow_or_failing_mirror_neither_delays_nor_fails_the_primary():
    async def go():
        versions = {"1": FakeBackend("1"), "2": FakeBackend("2", delay_s=0.5)}
        dp, client = gateway(versions)
        async with client:
            await shadowed(client)
            r = await client.post("/v1/classify", json={"texts": ["x"]})
            assert r.status_code == 200
            assert dp.table.mirrors.shadows["clf"].in_flight == 1  # the answer came back before the mirror's
            await settle(dp)
            assert dp.table.mirrors.shadows["clf"].counts["agreed"] == 1
            versions["2"].delay_s, versions["2"].error = 0, RuntimeError("broken candidate")
            assert (await client.post("/v1/classify", json={"texts": ["x"]})).status_code == 200
            await settle(dp)
            assert dp.table.mirrors.shadows["clf"].counts["failed"] == 1

    asyncio.run(go())


def test_mirrors_are_dropped_first_when_the_shadow_version_is_busy():
    async def go():
        dp, client = gateway({"1": FakeBackend("1"), "2": FakeBackend("2")})
        async with client:
            await shadowed(client)
            model = dp.table.model("clf")
            busy = dp.table.admission.controller(model, "2")
            tickets = [busy.admit() for _ in range(busy.concurrency)]  # every slot of version 2 taken
            assert (await client.post("/v1/classify", json={"texts": ["x"]})).status_code == 200
            for t in tickets:
                t.done()
            await settle(dp)
            assert dp.table.mirrors.shadows["clf"].counts == {"agreed": 0, "disagreed": 0, "failed": 0, "dropped": 1}

    asyncio.run(go())


def test_while_the_primary_is_busy_mirrors_keep_to_their_duty_limit():
    async def go():
        clock = Clock()
        dp, client = gateway({"1": FakeBackend("1"), "2": FakeBackend("2")})
        dp.table.mirrors.clock = clock
        async with client:
            await shadowed(client)
            shadow, model = dp.table.mirrors.shadows["clf"], dp.table.model("clf")
            ask = partial(client.post, "/v1/classify", json={"texts": ["x"]})
            await ask()  # the primary idle: mirrored; the mirror "took" no time, so no pause follows
            await settle(dp)
            busy = dp.table.admission.controller(model, "1").admit()  # another primary call in flight
            shadow.resume_at = clock.now + 4.0  # as after a mirror that took 1 s (1 / BUSY_DUTY - 1 = 4)
            await ask()
            clock.now += 3.9
            await ask()
            await settle(dp)
            assert (shadow.counts["agreed"], shadow.counts["dropped"]) == (1, 2)
            clock.now += 0.2  # the pause is over
            await ask()
            await settle(dp)
            assert (shadow.counts["agreed"], shadow.counts["dropped"]) == (2, 2)
            shadow.resume_at = clock.now + 100
            busy.done()
            await ask()  # the primary idle again: mirrored whatever the pause
            await settle(dp)
            assert (shadow.counts["agreed"], shadow.counts["dropped"]) == (3, 2)

    asyncio.run(go())


def test_a_mirror_call_sets_the_pause_from_its_own_duration():
    async def go():
        clock = Clock()
        versions = {"1": FakeBackend("1"), "2": FakeBackend("2", delay_s=0.05)}
        dp, client = gateway(versions)
        dp.table.mirrors.clock = clock
        async with client:
            await shadowed(client)
            versions["2"].answer = lambda texts: (setattr(clock, "now", clock.now + 1.0), labelled()(texts))[1]
            await client.post("/v1/classify", json={"texts": ["x"]})
            await settle(dp)
        assert dp.table.mirrors.shadows["clf"].resume_at == 100.0 + 1.0 + 1.0 * (1 / BUSY_DUTY - 1)

    asyncio.run(go())


def test_shadow_settings_are_checked_shared_and_cleared_with_the_version():
    async def go():
        kv = MemoryKV()
        dp, client = gateway({"1": FakeBackend("1"), "2": FakeBackend("2")}, kv)
        other, _ = gateway({"1": FakeBackend("1"), "2": FakeBackend("2")}, kv)
        async with client:
            for bad, fragment in (({"version": "9"}, "not loaded"), ({"version": "2", "share": 0}, "above 0"),
                                  ({"version": "2", "share": True}, "above 0"), ({"share": 1}, "must be")):
                r = await client.put("/v1/admin/models/clf/shadow", json=bad)
                assert r.status_code in (400, 404) and fragment in r.text, r.text
            assert (await shadowed(client, 0.5)).status_code == 200
            await other.admin.sync()
            assert other.table.mirrors.shadows["clf"].share == 0.5  # every replica mirrors alike
            r = await client.post("/v1/admin/models/clf/versions/2/unload")
            assert "shadow" not in r.json() and "clf" not in dp.table.mirrors.shadows
            assert (await client.put("/v1/admin/models/clf/shadow", json={})).status_code == 200

    asyncio.run(go())
