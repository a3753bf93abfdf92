"""Admission at the gateway against measured capacity: a queue bounded by time, not only by count.

Each served model version gets an `AdmissionController`. It counts the requests the ingress holds for that
version (in flight at a replica or waiting for a slot), knows how many a replica set serves at once
(`concurrency`: replicas x max_ongoing_requests), and keeps a moving estimate of one request's service time.
A request that arrives while `n` requests are held would wait behind `n - concurrency + 1` others, which drain at
`concurrency / service` per second; when that expected wait exceeds what the request can afford - the model's
`max_queue_wait_s`, and its own deadline less one service time - it is refused at once (429 `overloaded`,
gRPC RESOURCE_EXHAUSTED) with `Retry-After` set to the expected wait, instead of being queued to answer late.
Admitted requests then wait about one service time at most, which keeps their latency near the unloaded one.

Service time is learned from the answers: a request admitted at queue position `p` (0: a slot was free) took
about `service x (1 + p / concurrency)`, so each finished request gives one sample `latency / (1 + p / c)`,
averaged exponentially. Before the first sample nothing is refused on time grounds (no estimate yet).

Priority classes (dataplane/priority.py): a request waits only behind the requests of its class or higher and
the slots lower classes hold now (where it queues by class: the ingress' coalescing batcher), so under overload
the expected wait of the low class passes the limit first, and it is shed first; `refused_by_class` counts it.

Pure Python, no Ray: the dataplane calls `admit` before a model call and `Ticket.done` after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from serve_app.dataplane.priority import CLASSES, CURRENT, LOW, NORMAL
from serve_app.errors import Overloaded

# Weight of a new service-time sample: ~10 answers to follow a change, while one slow answer moves it by 20%.
SMOOTHING = 0.2


@dataclass
class Ticket:
    """One admitted request: call `done(ok)` exactly once when its model call ends."""

    controller: AdmissionController
    position: int  # requests ahead of it beyond the free slots, when admitted (0: it started at once)
    started: float
    priority: int = NORMAL
    finished: bool = False

    def done(self, ok: bool = True) -> None:
        if self.finished:
            return
        self.finished = True
        self.controller._finish(self, ok)


class AdmissionController:
    def __init__(self, name: str, concurrency: int, max_wait_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.name = name
        self.concurrency = concurrency
        self.max_wait_s = max_wait_s
        self.clock = clock
        self.held_by_class = dict.fromkeys(CLASSES, 0)  # admitted and not finished, per priority class
        self.service_s: float | None = None  # estimate of one request's service time; None until measured
        self.refused = 0
        self.refused_by_class = dict.fromkeys(CLASSES, 0)

    @property
    def held(self) -> int:
        return sum(self.held_by_class.values())

    def ahead_of(self, priority: int) -> int:
        """Requests a new one of class `priority` would wait behind: those of its class or higher, and the slots
        lower classes may hold now (queued ones of a lower class wait behind it)."""
        same_or_higher = sum(n for c, n in self.held_by_class.items() if c <= priority)
        lower = sum(n for c, n in self.held_by_class.items() if c > priority)
        return same_or_higher + min(lower, self.concurrency)

    def expected_wait_s(self, held: int | None = None, priority: int = LOW) -> float:
        """Seconds a request of class `priority` arriving now would wait for a slot (0 with a free slot or no
        estimate yet); `held` overrides the count of requests it would wait behind."""
        held = self.ahead_of(priority) if held is None else held
        ahead = held - self.concurrency + 1
        if ahead <= 0 or self.service_s is None:
            return 0.0
        return ahead * self.service_s / self.concurrency

    def admit(self, deadline_s: float | None = None, priority: int | None = None) -> Ticket:
        """Admit a request that has `deadline_s` seconds left (None: no deadline) of class `priority` (None: the
        request's, dataplane/priority.py), or raise `Overloaded`."""
        priority = self.check(deadline_s, priority)
        ticket = Ticket(self, max(0, self.ahead_of(priority) - self.concurrency + 1), self.clock(), priority)
        self.held_by_class[priority] += 1
        return ticket

    def check(self, deadline_s: float | None = None, priority: int | None = None) -> int:
        """Raise the `Overloaded` that `admit` would raise now (counted as a refusal), else return the class."""
        priority = CURRENT.get() if priority is None else priority
        wait = self.expected_wait_s(priority=priority)
        budgets = [b for b in (self.max_wait_s,
                               None if deadline_s is None or self.service_s is None else deadline_s - self.service_s)
                   if b is not None]
        if wait > 0 and budgets and wait > min(budgets):
            self.refused += 1
            self.refused_by_class[priority] += 1
            raise Overloaded(f"model '{self.name}' is at capacity: a {CLASSES[priority]}-priority request now would "
                             f"wait about {wait:.2f} s (limit {min(budgets):.2f} s); retry shortly",
                             retry_after_s=round(wait, 3))
        return priority

    def _finish(self, ticket: Ticket, ok: bool) -> None:
        self.held_by_class[ticket.priority] -= 1
        if not ok:
            return  # a failed or cancelled call says nothing reliable about the service time
        sample = (self.clock() - ticket.started) / (1 + ticket.position / self.concurrency)
        self.service_s = sample if self.service_s is None else (1 - SMOOTHING) * self.service_s + SMOOTHING * sample


class Admission:
    """The controllers of every served model version, made on first use from the model's config."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.controllers: dict[tuple[str, str], AdmissionController] = {}

    def controller(self, model, label: str) -> AdmissionController:
        """`model` is a config.ModelConfig; `label` the version answering."""
        key = (model.name, label)
        if key not in self.controllers:
            res = model.resources
            replicas = res.autoscaling.min_replicas if res.autoscaling else res.replicas
            self.controllers[key] = AdmissionController(f"{model.name}@{label}", replicas * model.max_ongoing_requests,
                                                        res.max_queue_wait_s, self.clock)
        return self.controllers[key]
