"""Variant selection and the response cache through the HTTP and OIP adapters, over in-process fakes: what a
client sends (headers, parameters), what it gets back (headers, fields, trace, 4xx) and what is counted."""

import asyncio

import httpx
from support.fakes import FakeBackend, MemoryMetrics, labelled

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.dataplane import DataPlane
from serve_app.dataplane.routing import ModelRoutes
from serve_app.protocols.http_app import create_app

CONFIG = {
    "models": [{"name": "clf", "task": "classification", "version": "1",
                "selection": {"variants": ["2", "3"]}, "cache": {"max_bytes": 100_000, "ttl_s": 60},
                "batching": {"coalesce": False}}],
    "pipelines": [{"name": "twice", "cache": {"max_bytes": 100_000},
                   "graph": {"type": "chain", "steps": [{"node": {"type": "model", "model": "clf"}},
                                                        {"node": {"type": "model", "model": "clf"}}]}}],
}
# fp32 (the configured version), int8 (gated, a little less accurate), and one that failed its gate.
FACTS = {"1": (95.0, True, 0.05), "2": (94.6, True, 0.01), "3": (99.0, False, 0.0)}


def dataplane(refuse=False):
    selection = {"variants": ["2", "3"], "on_unmet": "refuse" if refuse else "fastest"}
    config = {**CONFIG, "models": [{**CONFIG["models"][0], "selection": selection}]}
    routes = ModelRoutes("clf")
    for label, (accuracy, gated, delay) in FACTS.items():
        routes.add(label, FakeBackend(label, labelled(f"from-{label}"), delay_s=delay), 1.0 if label == "1" else 0.0,
                   facts={"content_hash": f"sha256:{label * 8}", "accuracy": accuracy, "gated": gated})
    metrics = MemoryMetrics()
    return DataPlane(parse_config(config, settings=GatewaySettings()), {"clf": routes}, metrics=metrics), metrics


def run(dp, requests):
    async def go():
        transport = httpx.ASGITransport(app=create_app(lambda: dp), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [await client.request(*r[:2], **r[2]) for r in requests]
    return asyncio.run(go())


def classify(text="some text", headers=None, **body):
    return ("POST", "/v1/classify", {"json": {"texts": [text], **body}, "headers": headers or {}})


def test_without_requirements_the_configured_version_answers_and_says_nothing_of_selection():
    dp, _ = dataplane()
    [r] = run(dp, [classify()])
    assert r.status_code == 200 and r.headers["x-model-version"] == "1"
    assert "selection" not in r.json() and "x-variant-selection" not in r.headers


def test_a_budget_picks_the_accurate_variant_while_it_fits_and_moves_when_it_does_not():
    dp, metrics = dataplane()
    # fp32 (~50 ms) fits 200 ms: it answers (measured by the first call). 30 ms does not fit fp32: the unmeasured
    # int8 is probed, then chosen because it fits (~10 ms).
    answers = run(dp, [classify(f"t{i}", {"X-Latency-Budget-Ms": "200"}) for i in range(3)]
                  + [classify(f"f{i}", {"X-Latency-Budget-Ms": "30"}) for i in range(2)]
                  + [classify("u", latency_budget_ms=200)])
    assert [a.headers["x-model-version"] for a in answers] == ["1", "1", "1", "2", "2", "1"]
    assert [a.json()["selection"]["reason"] for a in answers] == ["probe", "fits", "fits", "probe", "fits", "fits"]
    fast = answers[4]
    assert fast.json()["results"][0]["label"] == "from-2"
    assert fast.headers["x-variant-selection"] == "variant=2; reason=fits; budget_met=true"
    assert fast.json()["selection"]["expected_ms"] < 30
    assert metrics.total("gateway_variant_choices", model="clf", version="2") >= 1
    assert all(a.headers["x-model-version"] != "3" for a in answers)  # failed its gate: never


def test_an_unmeetable_budget_gets_the_fastest_flagged_or_429_with_retry_after():
    dp, _ = dataplane()
    warm = [classify("w1", {"X-Latency-Budget-Ms": "1000"}), classify("w2", {"X-Latency-Budget-Ms": "1"})]
    *_, flagged = run(dp, warm + [classify("x", {"X-Latency-Budget-Ms": "1"})])
    assert flagged.status_code == 200 and flagged.headers["x-model-version"] == "2"
    assert flagged.json()["selection"]["budget_met"] is False
    # A probe comes with no expectation; whether it met the budget is what the gateway measured.
    [probed] = run(dataplane()[0], [classify("p", {"X-Latency-Budget-Ms": "1"})])
    assert probed.json()["selection"]["reason"] == "probe" and probed.json()["selection"]["answered_ms"] > 1
    assert probed.json()["selection"]["budget_met"] is False
    assert probed.headers["x-variant-selection"].endswith("budget_met=false")
    dp, _ = dataplane(refuse=True)
    *_, refused = run(dp, warm + [classify("x", {"X-Latency-Budget-Ms": "1"})])
    assert refused.status_code == 429 and float(refused.headers["retry-after"]) > 0


def test_malformed_requirements_are_400_naming_the_field():
    dp, _ = dataplane()
    bad_header, bad_floor, bad_body, floor_too_high = run(dp, [
        classify(headers={"X-Latency-Budget-Ms": "soon"}), classify(headers={"X-Min-Accuracy": "-1"}),
        classify(latency_budget_ms="200"), classify(min_accuracy=99.5)])
    assert bad_header.status_code == 400 and bad_header.json()["field"] == "latency_budget_ms"
    assert bad_floor.status_code == 400 and bad_floor.json()["field"] == "min_accuracy"
    assert bad_body.status_code == 400 and "latency_budget_ms" in bad_body.text  # strict JSON types
    assert floor_too_high.status_code == 400 and "95" in floor_too_high.json()["error"]


def test_oip_parameters_select_too_and_metadata_declares_selection_and_cache():
    dp, _ = dataplane()
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"]}],
            "parameters": {"latency_budget_ms": "bad"}}
    bad, meta, models = run(dp, [("POST", "/v2/models/clf/infer", {"json": body}),
                                 ("GET", "/v2/models/clf", {}), ("GET", "/v1/models", {})])
    assert bad.status_code == 400 and bad.json()["field"] == "latency_budget_ms"
    props = meta.json()["properties"]
    assert props["selection_variants"] == "2,3" and props["response_cache"].startswith("max_bytes=100000")
    [model] = models.json()["models"]
    gates = [(v["version"], v["gated"]) for v in model["selection"]["variants"]]
    assert gates == [("1", True), ("2", True), ("3", False)]
    assert model["cache"]["max_bytes"] == 100_000


def test_oip_answers_name_the_variant_why_and_the_cache_in_their_parameters_over_rest_and_grpc():
    from serve_app.dataplane import InferenceResponse
    from serve_app.protocols.grpc_stubs import service_pb2 as pb
    from serve_app.protocols.oip_grpc import _infer_response

    dp, _ = dataplane()
    plain = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}
    budget = {**plain, "parameters": {"latency_budget_ms": 30}}
    first, again, selected = run(dp, [("POST", "/v2/models/clf/infer", {"json": plain})] * 2 +
                                 [("POST", "/v2/models/clf/infer", {"json": budget})])
    assert first.json()["parameters"] == {"cache": "miss"} and again.json()["parameters"] == {"cache": "hit"}
    params = selected.json()["parameters"]
    assert selected.json()["model_version"] == params["selection_variant"]
    assert params["selection_reason"] in ("fits", "probe", "over_budget") and isinstance(params["budget_met"], bool)
    answer = InferenceResponse("clf", [{"label": "a", "score": 1.0}], "2", fields={
        "cache": "miss", "selection": {"variant": "2", "reason": "fits", "budget_met": True}})
    msg = _infer_response(answer, pb.ModelInferRequest(model_name="clf"))
    assert msg.parameters["selection_variant"].string_param == "2" and msg.parameters["budget_met"].bool_param
    assert msg.parameters["selection_reason"].string_param == "fits" and msg.parameters["cache"].string_param == "miss"


def test_the_cache_answers_repeats_bypasses_on_no_cache_and_counts_both():
    dp, metrics = dataplane()
    first, again, other, fresh = run(dp, [classify("same"), classify("same"), classify("other"),
                                          classify("same", {"Cache-Control": "no-cache"})])
    assert [r.headers["x-cache"] for r in (first, again, other, fresh)] == ["miss", "hit", "miss", "bypass"]
    assert again.json()["results"] == first.json()["results"]
    backend = dp.table.routes["clf"].versions["1"].backend
    assert [texts for texts, _ in backend.calls] == [["same"], ["other"], ["same"]]
    assert metrics.total("gateway_cache_requests", model="clf", result="hit") == 1
    assert metrics.total("gateway_cache_requests", model="clf", result="miss") == 2


def test_versions_have_their_own_key_spaces_and_unloading_drops_a_versions_answers():
    dp, _ = dataplane()
    pinned = ("POST", "/v2/models/clf/versions/2/infer",
              {"json": {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["same"]}]}})
    run(dp, [classify("same"), pinned])
    assert len(dp.table.cache_for("clf").entries) == 2  # one per version, same input
    entry = dp.table.routes["clf"].remove("2")
    dp.table.forget_answers("clf", entry)
    assert len(dp.table.cache_for("clf").entries) == 1


def test_pipelines_cache_each_node_and_say_so_in_the_trace():
    dp, _ = dataplane()
    body = {"texts": ["same"], "trace": True}
    first, second = run(dp, [("POST", "/v1/pipelines/twice", {"json": body}),
                             ("POST", "/v1/pipelines/twice", {"json": body})])
    nodes = [e for e in first.json()["trace"] if e["type"] == "model"]
    # Both nodes read the request's text: the second finds the first's answer (same version, same input).
    assert [e["cache"] for e in nodes] == ["miss", "hit"]
    assert [e["cache"] for e in second.json()["trace"] if e["type"] == "model"] == ["hit", "hit"]
