"""The variant bench's target rows (P4, P12, P13) and how they merge into bench.json by id."""

import json

from serve_app.bench.report import merge_step
from serve_app.bench.variants.__main__ import candidates, p2_rows, rows
from serve_app.bench.variants.p4 import Int8Result, p4_row

P12 = {"budget_ms": 300.0, "concurrency": 8, "fp32_alone_p95_ms": 900.0, "mean_accuracy": 98.2, "ratio": 3.1}


def int8(speedup, drop):
    return Int8Result({"ORT int8 dynamic": {"speedup": speedup, "drop": drop, "version": "2"}}, "ORT int8 dynamic")


def test_p4_needs_both_the_speedup_and_the_accuracy_bound():
    assert p4_row(int8(2.6, 0.4))["met"] and not p4_row(int8(2.4, 0.0))["met"]
    none = p4_row(Int8Result({}, None))
    assert none["value"] is None and not none["met"] and "none within" in none["measure"]


def test_p12_counts_only_when_fp32_alone_misses_the_budget_and_accuracy_holds():
    cache = {"ratio": 0.1}
    by_id = {r["id"]: r for r in rows(int8(1.6, 0.2), {"p12": P12, "p13": cache}, 98.0)}
    assert by_id["P12"]["met"] and by_id["P13"]["met"]
    low = {r["id"]: r for r in rows(int8(1.6, 0.2), {"p12": {**P12, "mean_accuracy": 97.9}, "p13": cache}, 98.0)}
    assert not low["P12"]["met"]
    easy = {r["id"]: r for r in rows(int8(1.6, 0.2), {"p12": {**P12, "fp32_alone_p95_ms": 200.0}, "p13": cache}, 98.0)}
    assert not easy["P12"]["met"]  # a budget fp32 alone already meets is not the load P12 is about
    assert [r["id"] for r in rows(int8(1.6, 0.2), None, None)] == ["P4"]  # nothing served: P4 only


def _p2(ratio, listener):
    round_ = {"gateway": {"rps": ratio * 10, "errors": 0, "requests": 100}, "naive": {"rps": 10, "errors": 0,
                                                                                 "requests": 100}}
    return {"concurrency": 32, "listener": listener, "rounds": [round_] * 3}


def test_p2_is_read_behind_the_haproxy_front_and_the_default_front_is_reported_beside_it():
    p2 = {"haproxy": _p2(5.1, "haproxy"), "ray": _p2(3.4, "ray::ProxyActor")}
    by_id = {r["id"]: r for r in p2_rows(p2, "distilled 2 layers + ORT int8, 64 tokens")}
    assert by_id["P2"]["met"] and by_id["P2"]["value"] == 5.1 and "haproxy" in by_id["P2"]["measure"]
    assert not by_id["P2-ray-front"]["met"] and by_id["P2-ray-front"]["value"] == 3.4
    assert [r["id"] for r in rows(int8(2.6, 0.1), {"p12": P12, "p13": {"ratio": 0.1}, "p2": p2}, 98.0)] == [
        "P4", "P12", "P13", "P2", "P2-ray-front"]
    elsewhere = {"haproxy": _p2(5.1, "ray::ProxyActor")}
    assert not p2_rows(elsewhere, "v")[0]["met"]  # HAProxy did not hold the port: not the haproxy front's figure


def test_selection_candidates_are_p4s_best_and_the_fastest_then_the_next_fastest():
    speeds = {"a": 1.5, "b": 3.0, "c": 2.0, "d": 5.0, "e": 4.0}
    rows_ = {name: {"speedup": v, "drop": 0.0, "version": str(i + 2)} for i, (name, v) in enumerate(speeds.items())}
    result = Int8Result(rows_, best="b")
    assert result.fastest == "d"
    labels = {name: r["version"] for name, r in rows_.items()}
    assert candidates(result) == [labels["b"], labels["d"], labels["e"]]
    assert candidates(Int8Result({}, None)) == []


def test_merge_replaces_rows_by_id_and_keeps_the_others(tmp_path):
    old = {"settings": {"repeats": 3, "window_s": 5, "max_length": 128}, "sweep": {"x": {"1": [
        {"rps": 1, "p50_ms": 1, "p95_ms": 1, "p99_ms": 1, "errors": 0}]}},
           "hops": {"p50_ms_by_depth": {"1": 1.0}, "ms_per_hop": 1.0, "fanout3_over_single": 1.0},
           "generation": {"repeats": []},
           "targets": [{"id": "P1", "measure": "m", "value": 0.9, "target": ">= 0.9", "met": True},
                       {"id": "P4", "measure": "old", "value": 1.0, "target": ">= 2.5", "met": False}]}
    (tmp_path / "bench.json").write_text(json.dumps(old))
    merge_step(tmp_path, "variants", [p4_row(int8(2.6, 0.1))])
    result = json.loads((tmp_path / "bench.json").read_text())
    assert [(t["id"], t["value"]) for t in result["targets"]] == [("P1", 0.9), ("P4", 2.6)]
    assert result["variants_date"] and "scaleout_date" not in result
    assert "| P4 |" in (tmp_path / "bench.md").read_text()


def test_p2_reads_the_fastest_gated_variant_at_the_naive_servers_128_tokens():
    rows_ = {"ORT int8, 64 tokens": {"speedup": 5.0, "drop": 0.3, "version": "3"},
             "ORT int8 dynamic": {"speedup": 3.0, "drop": 0.1, "version": "2"},
             "ORT int8 static": {"speedup": 2.0, "drop": 0.1, "version": None}}  # refused by the gate
    result = Int8Result(rows_, best="ORT int8 dynamic")
    assert result.fastest == "ORT int8, 64 tokens" and result.fastest_full_length == "ORT int8 dynamic"
    only_short = Int8Result({"ORT int8, 64 tokens": rows_["ORT int8, 64 tokens"]}, best=None)
    assert only_short.fastest_full_length is None
    [p2] = [r for r in rows(only_short, {"p12": P12, "p13": {"ratio": 0.1}}, 98.0) if r["id"] == "P2"]
    assert p2["status"] == "not measured" and "128 tokens" in p2["problems"][0]
