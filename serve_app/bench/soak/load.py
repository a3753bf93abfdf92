"""Load: capacity by a closed loop (one model, or the mix), then an open-loop Stream at a fixed rate, both
from bench/load.py; this module checks and tallies the soak's answers."""

from __future__ import annotations

import threading

import httpx

from serve_app.bench.load import closed_loop_blocking, open_loop
from serve_app.bench.soak.targets import TEXTS, Target, call, reference_key
from serve_app.bench.stats import percentile


class Refused(RuntimeError):
    """A capacity-loop call that did not answer 200 (counted as a failure by the closed loop)."""


def _checked(client: httpx.Client, target: Target):
    def one(n: int) -> object:
        answer, _, status = call(client, target, TEXTS[n % len(TEXTS)], n)
        if status != 200:
            raise Refused(str(status))
        return answer
    return one


def measure_capacity(client: httpx.Client, target: Target, seconds: float, workers: int) -> float:
    """Requests per second answered by a closed loop of `workers` clients (bench/load.py's)."""
    return closed_loop_blocking(_checked(client, target), workers, seconds).rps


def measure_mixed_capacity(client: httpx.Client, target, seconds: float, workers: int) -> tuple[float, dict]:
    """The rate at which the round-robin mix can be sustained: a closed loop over the mix, then the number of
    kinds times the slowest kind's completion rate (the mix sends each kind equally often, so the slowest kind
    bounds it, slowed by everything that runs beside it). Neither the loop's total nor each kind's capacity
    alone will do: the total counts the fast kinds finishing many times while summaries queue, and the
    summarizer alone answered 4.3 req/s but only ~1.3 req/s with the classifiers beside it, so the 10-minute
    mixed soak at 70% of either figure had its summaries time out (938 of 5728 calls after 30 s)."""
    kinds = [k[0] for k in target.kinds]
    sample = closed_loop_blocking(_checked(client, target), workers, seconds)
    done = dict.fromkeys(kinds, 0)
    for n in sample.answers:  # request n was of kind n % len(kinds), as `call` sends them
        done[kinds[n % len(kinds)]] += 1
    per_kind = {k: v / sample.seconds for k, v in done.items()}
    return len(kinds) * min(per_kind.values()), per_kind


def _ms(seconds: list[float], q: float) -> float:
    """A latency percentile of `seconds`, in milliseconds (0 with none yet)."""
    return round(1000 * (percentile(seconds, q) or 0.0), 1)


class Stream:
    """An open-loop request stream at a fixed rate: sends on schedule, whatever the answers; checks each one."""

    def __init__(self, client: httpx.Client, target: Target, reference: dict):
        self.client, self.target, self.reference = client, target, reference
        self.latencies, self.errors, self.wrong, self.statuses = [], [], [], {}
        self.sent, self.lock = 0, threading.Lock()
        self.by_kind: dict[str, dict] = {}  # per kind of call in a mixed soak: statuses and latencies

    def _one(self, i: int) -> None:
        text = TEXTS[i % len(TEXTS)]
        answer, elapsed, status = call(self.client, self.target, text, i)
        key = reference_key(self.target, text, i)
        with self.lock:
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
            kind = self.by_kind.setdefault(key[0] if len(key) > 1 else "all", {"statuses": {}, "latencies": []})
            kind["statuses"][str(status)] = kind["statuses"].get(str(status), 0) + 1
            if status != 200:
                self.errors.append(status)
            elif not self.target.same(self.reference[key], answer):
                self.wrong.append((text, answer))
            else:
                self.latencies.append(elapsed)
                kind["latencies"].append(elapsed)

    def kind_report(self) -> dict:
        with self.lock:
            return {k: {"statuses": dict(v["statuses"]), "p50_ms": _ms(v["latencies"], 50),
                        "p99_ms": _ms(v["latencies"], 99)} for k, v in self.by_kind.items()}

    def run(self, rate: float, seconds: float, log=None, every_s: float = 30.0) -> float:
        def tick(sent: int, elapsed: float) -> None:  # a 10-minute run shows it is alive and how
            with self.lock:
                done, errors = len(self.latencies) + len(self.errors) + len(self.wrong), len(self.errors)
            log(f"  {elapsed:.0f}/{seconds:.0f} s: sent {sent}, answered {done}, "
                f"errors {errors}, wrong {len(self.wrong)}, p50 {_ms(self.latencies, 50):.0f} ms")
            if len(self.by_kind) > 1:
                log("    " + "; ".join(f"{k} p50 {v['p50_ms']:.0f} ms p99 {v['p99_ms']:.0f} ms {v['statuses']}"
                                      for k, v in self.kind_report().items()))

        elapsed = open_loop(self._one, rate, seconds, first=self.sent, tick=tick if log else None, every_s=every_s)
        self.sent += int(rate * seconds)
        return elapsed
