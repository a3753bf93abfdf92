"""Hostile input on every HTTP route, in process over fakes (issue 30): deep nesting, invalid Unicode, huge
arrays, wrong parameter types, empty prompts and overflowing numbers each get a 4xx in the route's own error
shape (OpenAI's on /openai/v1), naming the problem; none is a 500. The same bodies through a real Ray Serve,
with good requests batched beside them: tests/integration/test_hostile_ray.py."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from support.fakes import CHAIN_CONFIG, FakeBackend, FakeStreamer, topics
from support.hostile import CASES, DEEP, OPENAI, SURROGATE, check_refusal, completion, oip, raw

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.dataplane import DataPlane
from serve_app.dataplane.routing import ModelRoutes
from serve_app.protocols.http_app import create_app


@pytest.fixture(scope="module")
def client():
    config = parse_config({**CHAIN_CONFIG, "server": {"limits": {"max_body_bytes": 4 * 1024 * 1024}}},
                          settings=GatewaySettings())
    routes = {"clf": ModelRoutes("clf"), "sum": ModelRoutes("sum")}
    routes["clf"].add("5", FakeBackend("5", topics, info={}), 1.0)
    routes["sum"].add("2", FakeStreamer(), 1.0)
    dp = DataPlane(config, routes)
    with TestClient(create_app(lambda: dp), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize(("path", "body", "probe"), CASES, ids=[f"{p}-{w}-{i}" for i, (p, _, w) in enumerate(CASES)])
def test_hostile_body_is_a_4xx_in_the_routes_own_shape(client, path, body, probe):
    r = client.post(path, content=raw(body), headers={"content-type": "application/json"})
    check_refusal(f"{path} ({probe})", r.status_code, r.json())


def test_messages_name_the_problem(client):
    deep = client.post("/v1/classify", content='{"texts": ' + DEEP + "}")
    assert "nest" in deep.json()["error"], deep.text
    bad = client.post("/v1/classify", content='{"texts": [' + SURROGATE + "]}")
    assert "surrogate" in bad.json()["error"] or "Unicode" in bad.json()["error"], bad.text
    seed = client.post(OPENAI[1], content=completion('"hi"', ', "seed": ' + str(2**70)))
    assert seed.json()["error"]["param"] == "seed", seed.text
    params = client.post("/v2/models/clf/infer", content=oip('["x"]', ', "parameters": "x"'))
    assert "parameters" in params.json()["error"], params.text


def test_good_requests_still_answer_after_the_hostile_ones(client):
    for path, body, _ in CASES[:5]:
        client.post(path, content=raw(body))
    r = client.post("/v1/classify", content=json.dumps({"texts": ["a b", "c"]}))
    assert r.status_code == 200 and [x["label"] for x in r.json()["results"]] == ["b", "a"], r.text
    r = client.post(OPENAI[1], content=completion('"one two"'))
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == "ONE TWO", r.text
