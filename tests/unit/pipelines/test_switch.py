"""Switch nodes: spec and load-time validation (errors name the node), routing per text on an earlier node's
field, a request parameter or a header, in process and through HTTP (simple JSON, OIP REST) and OIP gRPC."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError
from support.fakes import CHAIN_CONFIG, FakeModels, chain_dataplane
from support.inprocess import request
from support.servers import Servicer, grpc_call

from serve_app.pipelines.engine import run_pipeline
from serve_app.pipelines.spec import Pipeline
from serve_app.pipelines.validate import PipelineError, check_pipelines, output_fields
from serve_app.protocols.grpc_stubs import service_pb2 as pb

TASKS = {"summarizer": "summarization", "classifier": "classification", "echo": "identity"}


def model(name: str) -> dict:
    return {"type": "model", "model": name}


def pipe(graph: dict, name: str = "p") -> Pipeline:
    return Pipeline.model_validate({"name": name, "graph": graph})


# classify, then summarize only what the classifier calls sport
SPORT_SUMMARIES = {"type": "chain", "steps": [
    {"node": model("classifier")},
    {"node": {"type": "switch", "cases": {"sport": {"when": {"field": "label", "equals": "sport"},
                                                    "node": model("summarizer")}}}}]}


@pytest.mark.parametrize("when, fragment", [
    ({"field": "label", "param": "x", "equals": 1}, "exactly one of field, param, header"),
    ({"field": "label"}, "exactly one of equals, one_of, above, below"),
    ({"header": "x-route", "equals": "a", "below": 2}, "exactly one of equals, one_of, above, below"),
])
def test_a_condition_has_one_source_and_one_test(when, fragment):
    with pytest.raises(ValidationError, match=fragment):
        pipe({"type": "switch", "cases": {"a": {"when": when, "node": model("echo")}}})


@pytest.mark.parametrize("graph, fragment", [
    ({"type": "switch", "cases": {"a": {"when": {"field": "label", "equals": "sport"}, "node": model("echo")}}},
     "node 'graph.cases.a.when': tests field 'label', which is not answered before this node; available: text"),
    ({"type": "chain", "steps": [{"node": model("classifier")}, {"node": {"type": "switch", "cases": {
        "a": {"when": {"field": "label", "above": 0.5}, "node": model("echo")}}}}]},
     "node 'graph.steps[1].node.cases.a.when': above/below compare numbers; field 'label' is label"),
    ({"type": "switch", "cases": {"default": {"when": {"param": "x", "equals": 1}, "node": model("echo")}}},
     "'default' names the default branch"),
    ({"type": "switch", "cases": {"a": {"when": {"param": "x", "equals": 1}, "node": model("ghost")}}},
     "node 'graph.cases.a': unknown model 'ghost'"),
])
def test_validation_names_the_node(graph, fragment):
    with pytest.raises(PipelineError) as err:
        check_pipelines([pipe(graph)], TASKS)
    assert fragment in str(err.value)


def test_output_fields_are_what_every_branch_answers_plus_branch():
    check_pipelines([pipe(SPORT_SUMMARIES)], TASKS)
    fields = output_fields([pipe(SPORT_SUMMARIES)], TASKS, "p")
    assert "summary" not in fields  # texts no case takes get no summary
    assert fields["branch"] == "label" and fields["label"] == "label"
    with_default = {"type": "switch", "cases": {"s": {"when": {"param": "long", "equals": True},
                                                      "node": model("summarizer")}},
                    "default": model("summarizer")}
    assert output_fields([pipe(with_default)], TASKS, "p")["summary"] == "text"


def run(graph: dict, texts: list[str], context: dict | None = None):
    models = FakeModels()
    records, trace = asyncio.run(run_pipeline({"p": pipe(graph)}, models, "p", texts, context))
    return records, trace, models


def test_a_field_of_an_earlier_node_routes_each_text():
    texts = ["late goal wins the cup final", "new chip for phones", "goal in extra time decides it"]
    records, trace, models = run(SPORT_SUMMARIES, texts)
    assert [r["branch"] for r in records] == ["sport", None, "sport"]
    assert records[0]["summary"] == "late goal wins" and records[2]["summary"] == "goal in extra"
    assert "summary" not in records[1] and records[1]["label"] == "tech"
    # one summarizer call for the two sport texts, none for the other
    assert models.calls == [("classifier", texts), ("summarizer", [texts[0], texts[2]])]
    switch = next(e for e in trace if e["type"] == "switch")
    assert switch["node"] == "graph.steps[1]" and switch["branches"] == {"sport": 2, "None": 1}
    assert any(e["node"] == "graph.steps[1].cases.sport" and e["latency_ms"] >= 0 for e in trace)


def test_parameters_and_headers_route_and_the_default_takes_the_rest():
    graph = {"type": "switch", "cases": {
        "short": {"when": {"param": "mode", "one_of": ["short", "brief"]}, "node": model("summarizer")},
        "echo": {"when": {"header": "X-Route", "equals": 2}, "node": model("echo")}},
        "default": model("classifier")}
    assert run(graph, ["a b c d"], {"params": {"mode": "brief"}})[0][0] == {"summary": "a b c", "branch": "short"}
    assert run(graph, ["a b c d"], {"headers": {"x-route": "2"}})[0][0] == {"text": "a b c d", "branch": "echo"}
    records = run(graph, ["a b c d"], {"params": {"mode": "long"}, "headers": {"x-route": "3"}})[0]
    assert records[0]["branch"] == "default" and records[0]["label"] == "tech"


def test_numbers_compare_as_numbers_and_absent_values_never_hold():
    graph = {"type": "chain", "steps": [{"node": model("classifier")}, {"node": {"type": "switch", "cases": {
        "unsure": {"when": {"param": "threshold", "below": 0.5}, "node": model("echo")}}}}]}
    assert run(graph, ["x"], {"params": {"threshold": "0.25"}})[0][0]["branch"] == "unsure"
    assert run(graph, ["x"], {"params": {"threshold": "high"}})[0][0]["branch"] is None
    assert run(graph, ["x"], {})[0][0]["branch"] is None


# -- through the protocols: the chain fakes' classifier says "b" for texts holding a b, else "a" ----------------
SWITCH_CONFIG = {"pipelines": [*CHAIN_CONFIG["pipelines"], {"name": "route", "graph": {"type": "chain", "steps": [
    {"node": model("clf")},
    {"node": {"type": "switch", "cases": {
        "b": {"when": {"field": "label", "equals": "b"}, "node": model("sum")},
        "loud": {"when": {"header": "x-loud", "equals": True}, "node": model("sum")},
        "asked": {"when": {"param": "summarize", "equals": True}, "node": model("sum")}}}}]}}]}


def test_switch_over_the_simple_json_and_oip_rest_routes():
    dp = chain_dataplane(config=SWITCH_CONFIG)
    r = request("POST", "/v1/pipelines/route", dp=dp, json={"texts": ["abc", "xyz"]})
    assert r.status_code == 200, r.text
    assert [(x["branch"], x.get("summary")) for x in r.json()["results"]] == [("b", "ABC"), (None, None)]
    r = request("POST", "/v1/pipelines/route", dp=dp, json={"texts": ["xyz"], "parameters": {"summarize": True}})
    assert r.json()["results"][0]["branch"] == "asked"
    r = request("POST", "/v1/pipelines/route", dp=dp, json={"texts": ["xyz"]}, headers={"X-Loud": "true"})
    assert r.json()["results"][0]["branch"] == "loud"
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["xyz"]}],
            "parameters": {"summarize": True}}
    r = request("POST", "/v2/models/route/infer", dp=dp, json=body)
    assert r.status_code == 200, r.text
    assert next(o for o in r.json()["outputs"] if o["name"] == "branch")["data"] == ["asked"]
    # texts on different branches answer different fields: a field some lack is BYTES, "" where absent
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["abc", "xyz"]}]}
    outputs = {o["name"]: o for o in request("POST", "/v2/models/route/infer", dp=dp, json=body).json()["outputs"]}
    assert outputs["summary"]["data"] == ["ABC", ""] and outputs["branch"]["data"] == ["b", ""]
    assert outputs["label"]["data"] == ["b", "a"]
    meta = request("GET", "/v2/models/route", dp=dp).json()
    assert "branch" in {o["name"] for o in meta["outputs"]} and "summary" not in {o["name"] for o in meta["outputs"]}


def test_switch_over_oip_grpc_reads_parameters_and_metadata():
    dp = chain_dataplane(config=SWITCH_CONFIG)
    req = pb.ModelInferRequest(model_name="route")
    req.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"xyz")
    ctx, reply = grpc_call(Servicer(dp), "ModelInfer", req, [("x-loud", "true")])
    assert ctx.code is None, ctx.details
    branch = next(i for i, o in enumerate(reply.outputs) if o.name == "branch")
    assert reply.raw_output_contents[branch] == b"\x04\x00\x00\x00loud"
