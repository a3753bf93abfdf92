"""T2 and T3 from fixed inputs: ratios of medians' inputs per repeat, judged only on a clean run."""

from serve_app.bench.traffic import rows


def sample(p50: float, p99: float, errors: int = 0) -> dict:
    return {"requests": 100, "errors": errors, "seconds": 10.0, "rps": 10.0, "p50_ms": p50, "p95_ms": p99,
            "p99_ms": p99}


def run(off=20.0, on=21.0, alone=30.0, loaded=50.0, mirror_agreed=40, low=None, errors=0) -> dict:
    return {"t2": {"rounds": [{"off": sample(off, off), "on": sample(on, on, errors),
                               "mirror": {"agreed": mirror_agreed}}] * 3},
            "t3": {"low_rate_rps": 240.0, "rounds": [{"alone": sample(10, alone), "loaded": sample(10, loaded),
                                                      "low_statuses": low or {"200": 900, "429": 1500}}] * 3}}


def test_t2_and_t3_divide_the_loaded_latency_by_the_unloaded_one():
    t2, t3 = rows(run())
    assert (t2["id"], t2["value"], t2["status"]) == ("T2", 1.05, "met")
    assert (t3["id"], t3["value"], t3["status"]) == ("T3", 1.667, "met")
    t2, t3 = rows(run(on=30.0, loaded=90.0))
    assert (t2["value"], t2["met"], t3["value"], t3["met"]) == (1.5, False, 3.0, False)


def test_a_failed_call_a_silent_mirror_or_an_overload_that_shed_nothing_is_not_measured():
    assert rows(run(errors=1))[0]["status"] == "not measured"
    assert rows(run(mirror_agreed=0))[0]["status"] == "not measured"
    assert rows(run(low={"200": 2400}))[1]["status"] == "not measured"
    assert rows(run(low={"200": 900, "429": 1500, "500": 1}))[1]["status"] == "not measured"


def test_each_front_has_its_own_rows_and_haproxy_must_be_proven_to_answer():
    behind_haproxy = {**run(), "front": "haproxy", "listener": "haproxy"}
    t2, t3 = rows(behind_haproxy)
    assert (t2["id"], t3["id"], t3["status"]) == ("T2", "T3", "met") and "haproxy HTTP front" in t3["measure"]
    t2, t3 = rows({**run(), "front": "ray", "listener": "ray::ProxyActor"}, "-ray-front")
    assert (t2["id"], t3["id"], t3["status"]) == ("T2-ray-front", "T3-ray-front", "met")
    unproven = rows({**behind_haproxy, "listener": "ray::ProxyActor"})
    assert [r["status"] for r in unproven] == ["not measured", "not measured"]
