"""Load: capacity by a closed loop (one model, or the mix), then an open-loop Stream at a fixed rate."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import httpx

from serve_app.bench.soak.targets import TEXTS, Target, call, reference_key
from serve_app.bench.stats import percentile


def measure_capacity(client: httpx.Client, target: Target, seconds: float, workers: int) -> float:
    """Requests per second answered by a closed loop of `workers` clients."""
    done, stop = [0], time.perf_counter() + seconds

    def loop(i: int):
        n = i
        while time.perf_counter() < stop:
            _, _, status = call(client, target, TEXTS[n % len(TEXTS)], n)
            n += workers
            if status == 200:
                done[0] += 1

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(loop, range(workers)))
    return done[0] / seconds


def measure_mixed_capacity(client: httpx.Client, target, seconds: float, workers: int) -> tuple[float, dict]:
    """The rate at which the round-robin mix can be sustained: a closed loop over the mix, then the number of
    kinds times the slowest kind's completion rate (the mix sends each kind equally often, so the slowest kind
    bounds it, slowed by everything that runs beside it). Neither the loop's total nor each kind's capacity
    alone will do: the total counts the fast kinds finishing many times while summaries queue, and the
    summarizer alone answered 4.3 req/s but only ~1.3 req/s with the classifiers beside it, so the 10-minute
    mixed soak at 70% of either figure had its summaries time out (938 of 5728 calls after 30 s)."""
    kinds = [k[0] for k in target.kinds]
    done, stop = dict.fromkeys(kinds, 0), time.perf_counter() + seconds
    lock = threading.Lock()

    def loop(w: int):
        n = w
        while time.perf_counter() < stop:
            _, _, status = call(client, target, TEXTS[n % len(TEXTS)], n)
            if status == 200:
                with lock:
                    done[kinds[n % len(kinds)]] += 1
            n += workers

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(loop, range(workers)))
    per_kind = {k: v / seconds for k, v in done.items()}
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
        started, n = time.perf_counter(), int(rate * seconds)
        next_report = started + every_s
        with concurrent.futures.ThreadPoolExecutor(64) as pool:
            futures = []
            for i in range(n):
                time.sleep(max(0.0, started + i / rate - time.perf_counter()))
                futures.append(pool.submit(self._one, self.sent + i))
                if log and time.perf_counter() >= next_report:  # a 10-minute run shows it is alive and how
                    next_report += every_s
                    with self.lock:
                        done, errors = len(self.latencies) + len(self.errors) + len(self.wrong), len(self.errors)
                    log(f"  {time.perf_counter() - started:.0f}/{seconds:.0f} s: sent {i + 1}, answered {done}, "
                        f"errors {errors}, wrong {len(self.wrong)}, p50 {_ms(self.latencies, 50):.0f} ms")
                    if len(self.by_kind) > 1:
                        log("    " + "; ".join(f"{k} p50 {v['p50_ms']:.0f} ms p99 {v['p99_ms']:.0f} ms {v['statuses']}"
                                              for k, v in self.kind_report().items()))
            for f in futures:
                f.result()
        self.sent += n
        return time.perf_counter() - started
