"""Shedding before parsing (protocols/early_shed.py): a request admission would refuse gets the same 429 before
the app reads it; every request whose fate is not certain goes through the full path."""

from __future__ import annotations

from support.fakes import FakeBackend, MemoryMetrics, labelled
from support.inprocess import CONFIG, INFER, bearer, classifier, request

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.dataplane import DataPlane
from serve_app.dataplane.priority import HIGH, LOW, NORMAL
from serve_app.dataplane.routing import ModelRoutes

LOW_CALL = {"X-Priority": "low"}


def saturated(backend=None, **model) -> DataPlane:
    """The classifier "clf" with every slot held by low-class requests and a second of service time each: a new
    low request would wait about 4 s, past its 0.5 s bound; a high one waits for one slot only."""
    config = {**CONFIG, "models": [{**CONFIG["models"][0], "resources": {"max_queue_wait_s": 0.5}, **model}]}
    routes = {"clf": ModelRoutes("clf")}
    routes["clf"].add("1", backend or classifier(), 1.0)
    dp = DataPlane(parse_config(config, settings=GatewaySettings()), routes, metrics=MemoryMetrics())
    ctl = controller(dp)
    ctl.service_s = 1.0
    ctl.held_by_class[LOW] = 5 * ctl.concurrency
    return dp


def controller(dp: DataPlane, label: str = "1"):
    return dp.table.admission.controller(dp.table.model("clf"), label)


def test_a_low_request_is_refused_before_its_body_is_read_as_the_full_path_would():
    dp = saturated()
    # Texts that are not a list: the full path would answer 400. Shed first, the body was never parsed.
    r = request("POST", "/v1/classify", dp=dp, json={"texts": 5, "model": "clf"}, headers=LOW_CALL)
    assert r.status_code == 429 and r.json()["kind"] == "overloaded", r.text
    assert "low-priority request now would wait about" in r.json()["error"]
    assert float(r.headers["retry-after"]) > 0.5
    # Counted as a refusal of the full path is: the controller's, the error and the per-class outcome.
    assert controller(dp).refused_by_class == {HIGH: 0, NORMAL: 0, LOW: 1}
    m = dp.table.metrics
    assert m.total("gateway_errors", model="clf", kind="overloaded") == 1
    assert m.total("gateway_priority_requests", model="clf", priority="low", outcome="shed") == 1
    # The full path refuses the same request alike (a body naming its priority goes through it).
    full = request("POST", "/v1/classify", dp=dp, json={"texts": ["x"], "model": "clf", "priority": "low"})
    assert full.status_code == 429 and full.json().keys() == r.json().keys()
    assert controller(dp).refused_by_class[LOW] == 2


def test_the_default_model_oip_routes_and_the_request_deadline_are_judged_alike():
    dp = saturated()
    assert request("POST", "/v1/classify", dp=dp, json={"texts": ["x"]}, headers=LOW_CALL).status_code == 429
    assert request("POST", "/v2/models/clf/infer", dp=dp, json=INFER, headers=LOW_CALL).status_code == 429
    r = request("POST", "/v2/models/clf/versions/1/infer", dp=dp, json=INFER, headers=LOW_CALL)
    assert r.status_code == 429
    # Without a queue bound, the deadline decides: 4 s of waiting fits in 10 s, not in 2.
    unbounded = saturated(resources={})
    assert request("POST", "/v1/classify", dp=unbounded, json={"texts": ["x"]},
                   headers={**LOW_CALL, "X-Request-Timeout": "10"}).status_code == 200
    assert request("POST", "/v1/classify", dp=unbounded, json={"texts": ["x"]},
                   headers={**LOW_CALL, "X-Request-Timeout": "2"}).status_code == 429


def test_what_admission_would_let_in_is_answered_in_full():
    seen = []

    def answer(texts):
        seen.append(texts)
        return labelled()(texts)

    dp = saturated(FakeBackend("1", answer))
    for headers in ({"X-Priority": "high"}, {}):  # high waits for one slot; normal behind lows' slots only
        r = request("POST", "/v1/classify", dp=dp, json={"texts": ["x"], "model": "clf"}, headers=headers)
        assert r.status_code == 200, r.text
    r = request("POST", "/v1/classify", dp=dp, json={"texts": ["y"], "priority": "high"}, headers=LOW_CALL)
    assert r.status_code == 200, r.text  # the body's class wins over the header's
    assert seen == [["x"], ["x"], ["y"]]


def test_requests_whose_fate_is_not_certain_get_the_full_paths_answer():
    dp = saturated()
    # A version not loaded, a model not served, a bad header, a bad token: their own errors, not 429.
    r = request("POST", "/v2/models/clf/versions/9/infer", dp=dp, json=INFER, headers=LOW_CALL)
    assert r.status_code == 404, r.text
    r = request("POST", "/v1/classify", dp=dp, json={"texts": ["x"], "model": "nope"}, headers=LOW_CALL)
    assert r.status_code == 404, r.text
    r = request("POST", "/v1/classify", dp=dp, json={"texts": ["x"]}, headers={"X-Priority": "urgent"})
    assert r.status_code == 400 and r.json()["field"] == "x-priority"
    r = request("POST", "/v1/classify", dp=dp, inference="s3cret", json={"texts": ["x"]}, headers=LOW_CALL)
    assert r.status_code == 401
    r = request("POST", "/v1/classify", dp=dp, inference="s3cret", json={"texts": ["x"]},
                headers={**LOW_CALL, **bearer("s3cret")})
    assert r.status_code == 429
    assert controller(dp).refused_by_class[LOW] == 1  # only the last one reached admission


def test_two_versions_taking_traffic_leave_the_choice_to_the_full_path():
    dp = saturated()
    dp.table.routes["clf"].add("2", FakeBackend("2"), 1.0)
    versions = set()
    for _ in range(12):
        r = request("POST", "/v1/classify", dp=dp, json={"texts": ["x"]}, headers=LOW_CALL)
        versions.add(r.headers.get("x-model-version") if r.status_code == 200 else r.status_code)
    assert versions == {"2", 429}  # version 2's free slots still answer; version 1's full ones refuse
