"""SLO-aware variant selection: per request, the most accurate gated variant expected to answer within the
request's latency budget (INFaaS, USENIX ATC '21), from live measurements of each variant.

A model may serve several variants of one lineage at once (fp32, int8, head-pruned int8...), each with its
gated held-out accuracy. A request states what it needs: a latency budget (`X-Latency-Budget-Ms` or the
`latency_budget_ms` parameter) and/or an accuracy floor (`min_accuracy`, in the gate's points). Then:

- candidates are the variants that passed their gate and meet the floor;
- each candidate's expected latency comes from a `LatencyFeed`: the seconds per request in line it measured
  on recent answers, times the calls it holds now. An idle variant whose estimate saw no answer for `STALE_S`
  counts as unknown, so it is probed again instead of being judged forever by the load it last had;
- the most accurate candidate whose expected latency fits the budget answers (unknown fits: that is how it
  gets measured); ties go to the faster one. With a floor and no budget, the fastest candidate answers;
- when none fits, the fastest answers and the response says the budget was not met, or, with
  `on_unmet: refuse`, the request is refused with 429 and Retry-After.

A request without requirements is not selected for: the configured version (traffic split) answers as before.
Pure Python, no Ray: the dataplane gives `choose` the candidates and their measurements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from serve_app.errors import InvalidInput, Overloaded

BUDGET_PARAM, ACCURACY_PARAM = "latency_budget_ms", "min_accuracy"
MAX_BUDGET_MS = 3_600_000.0
STALE_S = 2.0  # an estimate older than this (no answer since) is unknown again: the variant is probed


@dataclass(frozen=True)
class Requirement:
    budget_ms: float | None = None
    min_accuracy: float | None = None


@dataclass(frozen=True)
class Candidate:
    label: str  # the version label ("3", "sha256:...")
    accuracy: float | None  # the gated held-out metric (accuracy %); None: not evaluated
    gated: bool = True  # False: the variant failed (or never had) its gate; never chosen
    expected_ms: float | None = None  # expected latency now; None: not measured (recently)


@dataclass(frozen=True)
class Choice:
    label: str
    reason: str  # "fits", "probe", "fastest", "floor", "over_budget"
    met: bool  # False: no candidate was expected to meet the budget; the fastest answered
    expected_ms: float | None = None

    def as_dict(self, need: Requirement | None = None, answered_s: float | None = None) -> dict:
        """What the response says. Given the request's budget and how long the answer took, `budget_met` is that
        measurement (a probe has no expectation to report, and an over-budget pick may still make it in time);
        without them, the expectation the choice was made on."""
        out = {"variant": self.label, "reason": self.reason, "budget_met": self.met}
        if self.expected_ms is not None:
            out["expected_ms"] = round(self.expected_ms, 2)
        if need is not None and need.budget_ms is not None and answered_s is not None:
            out |= {"answered_ms": round(answered_s * 1000, 2), "budget_met": answered_s * 1000 <= need.budget_ms}
        return out


def _number(raw: object, name: str, low: float, high: float) -> float:
    """A finite number within [low, high] from a header string or a JSON number; 400 naming `name` if not."""
    if isinstance(raw, bool):
        value = math.nan
    elif isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            value = math.nan
    else:
        value = math.nan
    if not math.isfinite(value) or not low <= value <= high:
        shown = str(raw)[:40]
        raise InvalidInput(f"{name} {shown!r}: give a number from {low:g} to {high:g}", field=name)
    return value


def parse_requirement(needs: dict) -> Requirement | None:
    """The requirement a request stated (`latency_budget_ms`, `min_accuracy`), or None when it stated none."""
    budget, floor = needs.get(BUDGET_PARAM), needs.get(ACCURACY_PARAM)
    if budget is None and floor is None:
        return None
    return Requirement(None if budget is None else _number(budget, BUDGET_PARAM, 0.001, MAX_BUDGET_MS),
                       None if floor is None else _number(floor, ACCURACY_PARAM, 0.0, 100.0))


class LatencyFeed:
    """Live latency and queue of each variant, as the dataplane sees them.

    `start(label)` when a call goes to a variant, `finish(label, ticket, ok)` when it ends. A call that started
    with `h` others in flight for that variant and took `t` seconds gives one sample of the seconds per request
    in line, `t / (h + 1)`: under load a variant's latency grows with what it holds (a closed queue drains at
    its throughput), unloaded it is one service time. Samples are averaged exponentially (`smoothing`), and
    the expected latency of a call now is that average times (what it holds + 1). A variant that holds nothing
    and saw no answer for `stale_s` is unknown again (and so probed by `choose`).
    """

    def __init__(self, clock, smoothing: float = 0.2, stale_s: float = STALE_S):
        self.clock = clock
        self.smoothing = smoothing
        self.stale_s = stale_s
        self.held: dict[str, int] = {}
        self.per_request_s: dict[str, float] = {}
        self.answered_at: dict[str, float] = {}

    def start(self, label: str) -> tuple[float, int, bool]:
        """A call goes to `label`: the ticket to give `finish` (when, how many ahead, whether it probes)."""
        ahead = self.held.get(label, 0)
        self.held[label] = ahead + 1
        now = self.clock()
        probe = ahead == 0 and now - self.answered_at.get(label, now) > self.stale_s
        return now, ahead, probe

    def finish(self, label: str, ticket: tuple[float, int, bool], ok: bool = True) -> None:
        started, ahead, probe = ticket
        self.held[label] = max(0, self.held.get(label, 1) - 1)
        if not ok:  # a failed or cancelled call says nothing reliable about the variant's speed
            return
        now = self.clock()
        sample = (now - started) / (ahead + 1)
        old = None if probe else self.per_request_s.get(label)  # a probe's answer replaces a stale estimate
        self.per_request_s[label] = sample if old is None else (1 - self.smoothing) * old + self.smoothing * sample
        self.answered_at[label] = now

    def expected_ms(self, label: str) -> float | None:
        """Expected latency of a call sent to `label` now; None when unmeasured or stale."""
        rate, held = self.per_request_s.get(label), self.held.get(label, 0)
        if rate is None:
            return None
        if held == 0 and self.clock() - self.answered_at[label] > self.stale_s:
            return None
        return rate * (held + 1) * 1000


def choose(candidates: list[Candidate], need: Requirement, refuse_unmet: bool = False) -> Choice:
    """The variant that answers a request with requirement `need` (see the module's docstring)."""
    gated = [c for c in candidates if c.gated and c.accuracy is not None]
    if not gated:
        raise InvalidInput("no gated variant is loaded for selection; send the request without a latency budget "
                           "or accuracy floor", field=BUDGET_PARAM)
    floor = need.min_accuracy
    eligible = [c for c in gated if floor is None or c.accuracy >= floor]
    if not eligible:
        best = max(c.accuracy for c in gated)
        raise InvalidInput(f"min_accuracy {floor:g}: the most accurate loaded variant has {best:g}",
                           field=ACCURACY_PARAM)
    known = [c for c in eligible if c.expected_ms is not None]
    if need.budget_ms is None:
        if len(known) < len(eligible):  # measure every eligible variant before calling one the fastest
            unknown = next(c for c in eligible if c.expected_ms is None)
            return Choice(unknown.label, "probe", True)
        fastest = min(known, key=lambda c: c.expected_ms)
        return Choice(fastest.label, "floor", True, fastest.expected_ms)
    fits = [c for c in eligible if c.expected_ms is None or c.expected_ms <= need.budget_ms]
    if fits:
        best = max(fits, key=lambda c: (c.accuracy, -(c.expected_ms or 0.0)))
        return Choice(best.label, "fits" if best.expected_ms is not None else "probe", True, best.expected_ms)
    fastest = min(known, key=lambda c: c.expected_ms)
    if refuse_unmet:
        over = (fastest.expected_ms - need.budget_ms) / 1000
        raise Overloaded(f"no variant is expected to answer within {need.budget_ms:g} ms (fastest: "
                         f"{fastest.label}, about {fastest.expected_ms:.0f} ms); retry shortly",
                         retry_after_s=round(max(over, 0.001), 3))
    return Choice(fastest.label, "over_budget", False, fastest.expected_ms)
