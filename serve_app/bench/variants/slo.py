"""P12 and P13 against a running gateway that serves the fp32 classifier (version 1) with its int8 variant as
a selection candidate and a response cache.

P12: a closed loop of `concurrency` clients, each request carrying the same latency budget, answered (a) by
the fp32 variant alone (pinned `clf@1`) and (b) with SLO-aware selection (`clf` with X-Latency-Budget-Ms),
interleaved per repeat. The budget is set from this run's own calibration: halfway between the p50 the int8
variant alone reaches under that load and the p50 of fp32 alone, i.e. a budget int8 can meet and fp32 cannot.
Every answer's latency is measured at the client; its accuracy is the gated accuracy of the variant that
answered (X-Model-Version). Requests skip the cache (Cache-Control: no-cache), so P12 measures selection only.

P13: one request repeated, sequentially: p50 of cache hits ÷ p50 of the same request with no-cache.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter

import httpx

from serve_app.bench.load import closed_loop
from serve_app.bench.stats import percentile

NO_CACHE = {"Cache-Control": "no-cache"}


class Loop:
    """Closed-loop clients over one HTTP client; records (latency ms, answering version) per request."""

    def __init__(self, http: httpx.AsyncClient, texts: list[str]):
        self.http, self.texts = http, texts
        self.failed: Counter = Counter()  # status codes of answers that were not 200, over every run

    async def run(self, model: str, concurrency: int, seconds: float, budget_ms: float | None = None):
        """(latency ms, answering version) of every request answered in `seconds` (bench/load.py's closed loop);
        the status codes of the others are counted in `failed`."""
        headers = dict(NO_CACHE) | ({"X-Latency-Budget-Ms": f"{budget_ms:g}"} if budget_ms else {})

        async def one(n: int) -> str:
            text = self.texts[n % len(self.texts)]
            try:
                r = await self.http.post("/v1/classify", json={"texts": [text], "model": model}, headers=headers)
            except httpx.HTTPError:
                self.failed["no answer"] += 1
                raise
            if r.status_code != 200:
                self.failed[r.status_code] += 1
                raise RuntimeError(f"status {r.status_code}")
            return r.headers["x-model-version"]

        sample = await closed_loop(one, concurrency, seconds)
        return [(latency, version) for latency, version in sample.answers.values()]


def summary(answers: list[tuple[float, str]], budget_ms: float, accuracy: dict[str, float]) -> dict:
    ms = sorted(a for a, _ in answers)
    within = sum(a <= budget_ms for a in ms)
    return {"requests": len(ms), "share_within_budget": within / len(ms) if ms else 0.0,
            "p50_ms": round(percentile(ms, 50), 1) if ms else None,
            "p95_ms": round(percentile(ms, 95), 1) if ms else None,
            "mean_accuracy": round(statistics.fmean(accuracy[v] for _, v in answers), 3) if answers else None,
            "versions": dict(Counter(v for _, v in answers))}


async def p12(loop: Loop, accuracy: dict[str, float], int8: str, concurrency: int, window_s: float, repeats: int,
              tick) -> dict:
    tick("P12: calibrating the budget (each variant alone)")
    fp32_alone = await loop.run("clf@1", concurrency, window_s)
    int8_alone = await loop.run(f"clf@{int8}", concurrency, window_s)
    p50 = {name: statistics.median(a for a, _ in answers) for name, answers in
           (("fp32", fp32_alone), ("int8", int8_alone))}
    budget = round((p50["fp32"] + p50["int8"]) / 2, 1)
    rounds = []
    for r in range(repeats):
        tick(f"P12 repeat {r + 1}/{repeats}: fp32 alone, then selection (budget {budget:g} ms)")
        alone = summary(await loop.run("clf@1", concurrency, window_s, budget), budget, accuracy)
        selected = summary(await loop.run("clf", concurrency, window_s, budget), budget, accuracy)
        floor = 1 / max(1, alone["requests"])  # one request: a share of 0 would make the ratio infinite
        rounds.append({"fp32_alone": alone, "selection": selected,
                       "ratio": selected["share_within_budget"] / max(alone["share_within_budget"], floor)})
    return {"budget_ms": budget, "calibration_p50_ms": p50, "concurrency": concurrency, "rounds": rounds,
            "failed_by_status": dict(loop.failed),
            "ratio": statistics.median(r["ratio"] for r in rounds),
            "mean_accuracy": statistics.median(r["selection"]["mean_accuracy"] for r in rounds),
            "fp32_alone_p95_ms": statistics.median(r["fp32_alone"]["p95_ms"] for r in rounds)}


async def p13(http: httpx.AsyncClient, text: str, requests: int, repeats: int, tick) -> dict:
    async def p50(headers: dict) -> float:
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            r = await http.post("/v1/classify", json={"texts": [text], "model": "clf"}, headers=headers)
            assert r.status_code == 200, r.text
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)

    await http.post("/v1/classify", json={"texts": [text], "model": "clf"})  # the answer the hits read
    rounds = []
    for r in range(repeats):
        tick(f"P13 repeat {r + 1}/{repeats}")
        uncached, hit = await p50(NO_CACHE), await p50({})
        rounds.append({"uncached_p50_ms": round(uncached, 2), "hit_p50_ms": round(hit, 2), "ratio": hit / uncached})
    return {"rounds": rounds, "ratio": statistics.median(r["ratio"] for r in rounds)}
