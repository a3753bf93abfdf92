"""Shadow (mirror) traffic: a share of a model's requests also goes to another loaded version, whose answers are
compared with the primary's and thrown away (Seldon Core 2's mirror experiments; Istio's traffic mirroring).

The caller gets only the primary's answer, at the primary's latency: the mirror call runs beside it as a task of
its own and waits for the primary's answer only to compare. It never delays or fails the primary, and it is the
first work dropped under load: no mirror starts while the shadow version has no free slot (its admission
controller holds as many calls as it serves at once), while `MAX_IN_FLIGHT` mirrors are running, or, while the
primary is busy, before its duty limit allows (`BUSY_DUTY`); and it runs at the low priority class, whose
batches a model replica runs at idle OS priority (deployments/base.py). Counted per outcome (agreed,
disagreed, failed, dropped) and timed; `/v1/models` shows the agreement rate. Set per model at run time
(`PUT /v1/admin/models/<name>/shadow`), kept in the shared routing state, so every ingress replica mirrors alike.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import deque
from dataclasses import dataclass, field

from serve_app.dataplane.priority import CURRENT, LOW

# Mirror calls per model at once. Each is a batch in the shadow's replica, and where the shadow shares cores with
# the primary even an idle-priority thread takes a minimum share of them (Linux gives SCHED_IDLE a weight of 3
# against the 36 of Ray's nice-15 workers): measured on 2 shared cores at concurrency 8 (T2), 8 in flight raised
# the primary's p50 by 15-41% and 2 by at most 16% (median 2%), while still comparing 6-14 answers a second.
MAX_IN_FLIGHT = 2
# While the primary is busy (another of its calls in flight), mirror calls may be in flight at most this share of
# the time: after one that took d seconds, none starts for d x (1/BUSY_DUTY - 1). A mirror kept always in flight
# (one at a time) on the 2 cores the primary shares cost its p50 at concurrency 8 15-67%, though it compared only
# ~1 answer a second: starved at idle priority, each call stayed in flight about a second, its threads still
# taking their minimum share. With no other primary call in flight, every sampled request is mirrored.
BUSY_DUTY = 0.2


@dataclass
class Shadow:
    version: str
    share: float
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("agreed", "disagreed", "failed", "dropped"), 0))
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=1000))
    in_flight: int = 0
    resume_at: float = 0.0  # (clock) while the primary is busy, no mirror starts before this

    def summary(self) -> dict:
        compared = self.counts["agreed"] + self.counts["disagreed"]
        p50 = statistics.median(self.latencies_ms) if self.latencies_ms else None
        return {"version": self.version, "share": self.share, **self.counts,
                "agreement": round(self.counts["agreed"] / compared, 4) if compared else None,
                "p50_ms": None if p50 is None else round(p50, 2)}


def same_answer(a: dict, b: dict) -> bool:
    """Whether two answers to one text agree: the label of a classifier, the text of a summary or an echo."""
    key = next((k for k in ("label", "summary", "text") if k in a), None)
    return a == b if key is None else a.get(key) == b.get(key)


class Mirrors:
    """Each model's shadow, and the mirror calls in flight."""

    def __init__(self, table, rng=random.random, clock=time.monotonic):
        self.table, self.rng, self.clock = table, rng, clock
        self.shadows: dict[str, Shadow] = {}
        self.tasks: set[asyncio.Task] = set()

    def configure(self, model: str, wanted: dict | None) -> None:
        """Set or clear a model's shadow; counts are kept while the version stays the same."""
        current = self.shadows.get(model)
        if not wanted:
            self.shadows.pop(model, None)
        elif current is not None and current.version == wanted["version"]:
            current.share = wanted["share"]
        else:
            self.shadows[model] = Shadow(wanted["version"], wanted["share"])

    def start(self, model, primary_label: str, texts: list[str], params: dict) -> asyncio.Future | None:
        """Maybe mirror this call; the future it returns takes the primary's answer (or error), to compare."""
        shadow = self.shadows.get(model.name)
        if shadow is None or shadow.version == primary_label or self.rng() >= shadow.share:
            return None
        entry = self.table.routes[model.name].versions.get(shadow.version)
        controller = self.table.admission.controller(model, shadow.version)
        primary_busy = self.table.admission.controller(model, primary_label).held > 0  # (this call not yet held)
        if (entry is None or shadow.in_flight >= MAX_IN_FLIGHT or controller.held >= controller.concurrency
                or (primary_busy and self.clock() < shadow.resume_at)):
            self._count(model.name, shadow, "dropped")
            return None
        primary = asyncio.get_running_loop().create_future()
        primary.add_done_callback(lambda f: f.cancelled() or f.exception())  # read even if the mirror failed first
        task = asyncio.get_running_loop().create_task(self._mirror(model, shadow, entry, texts, params, primary))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return primary

    async def _mirror(self, model, shadow: Shadow, entry, texts: list[str], params: dict,
                      primary: asyncio.Future) -> None:
        CURRENT.set(LOW)  # this task's own context: the mirror is bulk work, whatever the request's class
        shadow.in_flight += 1
        controller = self.table.admission.controller(model, shadow.version)
        started, ok = self.clock(), False
        try:
            ticket = controller.admit()
            try:
                out = await entry.backend.infer(texts, params)
                ok = True
            finally:
                ticket.done(ok)
        except Exception:  # noqa: BLE001 - a mirror's failure is counted, never raised to anyone
            self._count(model.name, shadow, "dropped" if not ok and controller.held >= controller.concurrency
                        else "failed")
            return
        finally:
            shadow.in_flight -= 1
            elapsed = self.clock() - started
            shadow.resume_at = max(shadow.resume_at, self.clock() + elapsed * (1 / BUSY_DUTY - 1))
        shadow.latencies_ms.append(elapsed * 1000)
        self.table.metrics.observe("gateway_shadow_duration_seconds", {"model": model.name, "version": shadow.version},
                                   elapsed)
        try:
            answer = await primary
        except Exception:  # noqa: BLE001 - the primary failed: nothing to compare
            return
        agreed = len(answer["results"]) == len(out["results"]) and all(
            same_answer(a, b) for a, b in zip(answer["results"], out["results"], strict=True))
        self._count(model.name, shadow, "agreed" if agreed else "disagreed")

    def _count(self, model: str, shadow: Shadow, outcome: str) -> None:
        shadow.counts[outcome] += 1
        self.table.metrics.inc("gateway_shadow_requests", {"model": model, "version": shadow.version,
                                                           "outcome": outcome})
