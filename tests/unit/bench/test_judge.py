"""Every bench target is judged by one rule (serve_app/bench/judge.py), checked here on fixed inputs: the median
against the target with its spread, and "not measured" (never met) for a failed, wrong, empty or partial run."""

from __future__ import annotations

import math

import pytest

from serve_app.bench.judge import GE, LE, failures, judge, ratio
from serve_app.bench.suite import BenchSettings, targets_table
from serve_app.bench.variants.__main__ import p2_rows


def test_ratio_refuses_zero_missing_and_non_finite_figures():
    assert ratio(3.0, 2.0) == 1.5
    for a, b in ((1.0, 0.0), (1.0, None), (None, 1.0), (1.0, -2.0), (math.nan, 1.0), (1.0, math.inf)):
        assert ratio(a, b) is None, (a, b)


@pytest.mark.parametrize(("values", "op", "target", "value", "met", "status"), [
    ([0.8, 0.95, 0.92], GE, 0.9, 0.92, True, "met"),
    ([0.8, 0.85, 0.95], GE, 0.9, 0.85, False, "missed"),  # one good repeat does not make the median
    ([2.5, 1.5, 1.9], LE, 2.0, 1.9, True, "met"),
    ([0.0, 0.0, 0.0], LE, 2.0, 0.0, True, "met"),  # a measured zero is a value (a gap of 0 ms) ...
])
def test_the_median_of_the_repeats_meets_or_misses(values, op, target, value, met, status):
    row = judge("X", "m", values, op, target)
    assert (row["value"], row["met"], row["status"]) == (value, met, status)
    assert row["spread"] == [min(values), max(values)] and row["target"] == f"{op} {target:g}"


@pytest.mark.parametrize(("values", "problems"), [
    ([1.0, None, 1.0], []),  # ... a missing one is not
    ([1.0, math.nan, 1.0], []),
    ([], []),
    ([1.0, 1.0, 1.0], ["gateway: 3 requests failed or were answered wrongly"]),
])
def test_a_partial_or_unclean_run_is_not_measured_and_never_met(values, problems):
    row = judge("X", "m", values, LE, 2.0, problems)
    assert row["value"] is None and row["met"] is False and row["status"] == "not measured"
    assert row["problems"]


def test_failures_count_errors_and_empty_windows():
    assert failures([{"requests": 10, "errors": 0}], "a") == []
    assert "2 requests failed" in failures([{"requests": 10, "errors": 2}], "a")[0]
    assert "no request" in failures([{"requests": 0, "errors": 0}], "a")[0]


def sample(rps, p50=10.0, errors=0, requests=100):
    return {"rps": rps, "p50_ms": p50, "p95_ms": p50, "p99_ms": p50, "errors": errors, "requests": requests}


def sweep(gateway_rps, raw_rps, **bad):
    names = ["gateway HTTP", "gateway OIP REST", "gateway OIP gRPC", "raw in-process"]
    out = {n: {1: [sample(10, 5.0)] * 3, 32: [sample(r) for r in (raw_rps if n == "raw in-process" else gateway_rps)]}
           for n in names}
    for name, s in bad.items():
        out[name.replace("_", " ")][32] = s
    return out


HOPS = {"ms_per_hop": 1.0, "fanout3_over_single": 1.1, "ms_per_hop_repeats": [1.0, 1.2, 0.9],
        "fanout3_repeats": [1.1, 1.2, 1.0]}


def test_p1_is_the_median_of_per_repeat_ratios_and_not_measured_when_any_request_failed():
    settings = BenchSettings(concurrencies=[1, 32], ratio_concurrency=32)
    by_id = {t["id"]: t for t in targets_table(sweep([90, 80, 100], [100, 100, 100]), HOPS, [], settings)}
    assert (by_id["P1"]["value"], by_id["P1"]["status"], by_id["P1"]["spread"]) == (0.9, "met", [0.8, 1.0])
    assert by_id["P3"]["value"] == 1.0 and by_id["P9"]["value"] == 5.0 - 5.0
    assert by_id["G1"]["status"] == "not measured"  # no generation rows
    failed = sweep([90, 95, 100], [100, 100, 100])
    failed["gateway HTTP"][32][1] = sample(95, errors=1)
    p1 = {t["id"]: t for t in targets_table(failed, HOPS, [], settings)}["P1"]
    assert p1["status"] == "not measured" and p1["met"] is False and "gateway HTTP" in p1["problems"][0]
    dead = {t["id"]: t for t in targets_table(sweep([90, 95, 100], [100, 0, 100]), HOPS, [], settings)}["P1"]
    assert dead["status"] == "not measured" and dead["value"] is None  # a zero denominator is not a measurement


def p2_run(gateway_rps, naive_rps, listener="haproxy", errors=0):
    rounds = [{"gateway": sample(g, errors=errors), "naive": sample(n)} for g, n in zip(gateway_rps, naive_rps)]
    return {"concurrency": 32, "listener": listener, "rounds": rounds}


def test_p2_needs_the_haproxy_front_proven_and_every_answer_right():
    ok = {r["id"]: r for r in p2_rows({"haproxy": p2_run([50, 45, 60], [10, 10, 10])}, "v")}["P2"]
    assert (ok["value"], ok["met"]) == (5.0, True)
    for run in (p2_run([50] * 3, [10] * 3, listener=None), p2_run([50] * 3, [10] * 3, listener="ray::ProxyActor"),
                p2_run([50] * 3, [10] * 3, errors=2), p2_run([50] * 3, [0, 10, 10])):
        [row] = p2_rows({"haproxy": run}, "v")
        assert row["status"] == "not measured" and not row["met"], run
