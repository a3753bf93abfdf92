"""Routing state shared by ingress replicas (dataplane/shared_state.py, route_state.py): several `DataPlane`s over
one key-value store stand for replicas of one gateway; a new one stands for a replica Ray started again."""

from __future__ import annotations

import asyncio
import threading

import pytest
from support.fakes import FakeBackend, FakeManager

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.dataplane import DataPlane
from serve_app.dataplane.route_state import editing
from serve_app.dataplane.routing import ModelRoutes
from serve_app.dataplane.shared_state import KEEP_REVISIONS, MemoryKV, SharedRoutes
from serve_app.errors import ModelNotFound

CONFIG = {"models": [{"name": "clf", "task": "classification", "version": "1"}]}


def replica(kv: MemoryKV, manager: FakeManager | None = None) -> DataPlane:
    """A replica as the ingress builds one: the configured routes, then the shared state taken up."""
    config = parse_config(CONFIG, settings=GatewaySettings())
    routes = {"clf": ModelRoutes("clf")}
    routes["clf"].add("1", FakeBackend("1"), 1.0)
    return DataPlane(config, routes, manager or FakeManager(), shared=SharedRoutes(kv, "gw"))


def shares(dp: DataPlane) -> dict[str, float]:
    return dp.table.routes["clf"].shares()


def test_a_change_through_one_replica_is_seen_by_another_and_by_a_restarted_one():
    async def go():
        kv = MemoryKV()
        a, b = replica(kv), replica(kv)
        await a.admin.load("clf", "v2")
        await a.admin.set_traffic("clf", {"1": 1, "2": 3})
        assert shares(b) == {"1": 1.0}  # not yet synced
        await b.admin.sync()
        assert shares(b) == {"1": 0.25, "2": 0.75}
        answer = await b.table.routes["clf"].pick("2").backend.infer(["x"], {})
        assert answer["version"] == "2"  # b attached the version a loaded
        await b.admin.unload("clf", "1")
        await a.admin.sync()
        assert shares(a) == {"2": 1.0}
        restarted = replica(kv)  # the configured routes had version 1: the shared state wins
        assert shares(restarted) == {"2": 1.0}
        # and the configured split is still what loading version 1 back restores, everywhere
        await restarted.admin.load("clf", "v1")
        await a.admin.sync()
        assert shares(a) == shares(restarted) == {"1": 0.0, "2": 1.0}  # a split was set by hand since

    asyncio.run(go())


class RacingKV(MemoryKV):
    """Runs `before_write` (another replica's commit) once, between a writer's read and its write."""

    def __init__(self):
        super().__init__()
        self.before_write = None

    def put_new(self, key: str, value: bytes) -> bool:
        if self.before_write is not None:
            interloper, self.before_write = self.before_write, None
            interloper()
        return super().put_new(key, value)


def other_replica_sets(kv: MemoryKV, change) -> None:
    def edit(doc: dict) -> None:
        with editing(doc, "clf") as routes:
            change(routes)
    SharedRoutes(kv, "gw").commit(edit)


def test_conflicting_admin_calls_both_land_in_commit_order():
    async def go():
        kv = RacingKV()
        a, b = replica(kv), replica(kv)
        await a.admin.load("clf", "v2")
        await b.admin.sync()
        # b sets 1:1 while another replica's 2:1 lands first: b re-reads and writes on top (last writer wins)
        kv.before_write = lambda: other_replica_sets(kv, lambda r: r.set_weights({"2": 1}))
        await b.admin.set_traffic("clf", {"1": 1})
        rev = SharedRoutes(kv, "gw").read()["rev"]
        await a.admin.sync()
        assert shares(a) == shares(b) == {"1": 1.0, "2": 0.0}
        # an unload that loses the race to the same unload is told the version is gone; nothing is written
        kv.before_write = lambda: other_replica_sets(kv, lambda r: r.remove("2"))
        with pytest.raises(ModelNotFound, match="not loaded"):
            await b.admin.unload("clf", "2")
        assert SharedRoutes(kv, "gw").read()["rev"] == rev + 1

    asyncio.run(go())


def test_concurrent_commits_from_threads_all_land_once():
    store = SharedRoutes(MemoryKV(), "t")

    def writer(i: int) -> None:
        for j in range(10):
            store.commit(lambda doc, k=f"{i}-{j}": doc["models"].setdefault(k, {"versions": {}}) and None)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    doc = store.read()
    assert doc["rev"] == 80 and len(doc["models"]) == 80


def test_old_revisions_are_pruned_and_a_stale_hint_still_reads_the_newest():
    kv = MemoryKV()
    store = SharedRoutes(kv, "p")
    for i in range(KEEP_REVISIONS * 2):
        store.commit(lambda doc, i=i: doc.update(n=i))
    assert sum(k.startswith("p/rev/") for k in kv.data) == KEEP_REVISIONS
    kv.put("p/head", b"3")  # a hint far behind (pruned revision)
    assert store.read()["n"] == KEEP_REVISIONS * 2 - 1
    assert store.commit(lambda doc: False)["rev"] == KEEP_REVISIONS * 2  # "no change" writes nothing


def test_applications_nobody_routes_to_are_swept_on_the_second_sighting():
    async def go():
        manager = FakeManager()
        dp = replica(MemoryKV(), manager)
        manager.running = {"1", "clf--v7"}  # "1": the configured version's app (fakes name apps by label)
        assert await dp.admin.sweep() == []  # first sighting: could be a load about to commit
        await dp.admin.load("clf", "v7")
        manager.running |= {"7", "clf--v9"}
        assert await dp.admin.sweep() == ["clf--v7"]  # seen twice, never routed to
        assert manager.deleted == ["clf--v7"] and "7" in manager.running
        assert await dp.admin.sweep() == ["clf--v9"]

    asyncio.run(go())


def test_loading_a_loaded_version_again_keeps_its_traffic():
    """Backends named by their Serve application, as in Ray: the document compares applications, not labels."""
    def named(label: str) -> FakeBackend:
        backend = FakeBackend(label)
        backend.app = f"clf--v{label}"
        return backend

    async def go():
        dp = replica(MemoryKV(), FakeManager(backend=named))
        await dp.admin.load("clf", "v2")
        await dp.admin.set_traffic("clf", {"1": 1, "2": 3})
        await dp.admin.load("clf", "v2")
        assert shares(dp) == {"1": 0.25, "2": 0.75}
        assert dp.admin.shared.read()["models"]["clf"]["versions"]["2"]["app"] == "clf--v2"

    asyncio.run(go())
