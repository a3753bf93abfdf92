"""The ingress' collector settles once warm (serve_app/gc_settle.py): collect, freeze, young threshold raised."""

from __future__ import annotations

import gc

from serve_app.gc_settle import GcSettle


class FakeGc:
    def __init__(self):
        self.young, self.calls, self.threshold, self.frozen = 0, [], (700, 10, 10), 0

    def get_stats(self):
        return [{"collections": self.young}, {"collections": 0}, {"collections": 0}]

    def collect(self):
        self.calls.append("collect")

    def freeze(self):
        self.calls.append("freeze")
        self.frozen = 1000

    def get_freeze_count(self):
        return self.frozen

    def get_threshold(self):
        return self.threshold

    def set_threshold(self, *t):
        self.threshold = t


def test_it_waits_for_warmth_then_collects_freezes_and_raises_the_young_threshold_once():
    fake = FakeGc()
    fake.young = 50  # collections before the ingress started count for nothing
    settle = GcSettle(fake, warm_collections=100, young_threshold=10_000)
    fake.young = 149
    assert not settle.poll() and fake.calls == []
    fake.young = 150
    assert settle.poll()
    assert fake.calls == ["collect", "freeze"] and fake.threshold == (10_000, 10, 10)
    fake.young = 10_000
    assert not settle.poll() and fake.calls == ["collect", "freeze"]  # once


def test_a_higher_threshold_already_set_is_kept():
    fake = FakeGc()
    fake.threshold = (50_000, 20, 5)
    GcSettle(fake, warm_collections=0).poll()
    assert fake.threshold == (50_000, 20, 5)


def test_with_the_real_collector_what_exists_is_frozen():
    before = gc.get_threshold()
    try:
        settle = GcSettle(warm_collections=1, young_threshold=before[0] + 1)
        gc.collect(0)
        assert settle.poll()
        assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] == before[0] + 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
