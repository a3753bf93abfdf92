"""Hostile input on every HTTP route, in process over fakes (issue 30): deep nesting, invalid Unicode, huge
arrays, wrong parameter types, empty prompts and overflowing numbers each get a 4xx in the route's own error
shape (OpenAI's on /openai/v1), naming the problem; none is a 500. The same bodies through a real Ray Serve,
with good requests batched beside them: tests/integration/test_hostile_ray.py."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from support.fakes import CHAIN_CONFIG, FakeBackend, FakeStreamer, topics

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.dataplane import DataPlane
from serve_app.dataplane.routing import ModelRoutes
from serve_app.protocols.http_app import create_app

OPENAI = ("/openai/v1/chat/completions", "/openai/v1/completions")
DEEP = "[" * 10_000 + "]" * 10_000
SURROGATE = '"\\ud800"'  # valid JSON text, not valid Unicode: a lone UTF-16 surrogate


def oip(data: str, extra: str = "") -> str:
    return '{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ' + data + '}]' + extra + "}"


def chat(content: str, extra: str = "") -> str:
    return '{"model": "sum", "messages": [{"role": "user", "content": ' + content + "}]" + extra + "}"


def completion(prompt: str, extra: str = "") -> str:
    return '{"model": "sum", "prompt": ' + prompt + extra + "}"


# (route, raw body, what it probes); every one must be answered with a 4xx naming the problem.
CASES = [
    # nesting far deeper than any schema allows
    ("/v1/classify", '{"texts": ' + DEEP + "}", "deep"),
    ("/v1/summarize", '{"texts": ' + DEEP + "}", "deep"),
    ("/v1/pipelines/stc", '{"texts": ' + DEEP + "}", "deep"),
    ("/v2/models/clf/infer", oip(DEEP), "deep"),
    ("/v2/models/clf/infer", oip("[" * 700 + '"x"' + "]" * 700), "deep"),
    ("/v2/models/sum/generate", '{"text_input": ' + DEEP + "}", "deep"),
    ("/v1/models/clf:predict", '{"instances": ' + DEEP + "}", "deep"),
    (OPENAI[0], chat(DEEP), "deep"),
    (OPENAI[1], completion(DEEP), "deep"),
    ("/v1/classify", DEEP, "deep"),
    # invalid Unicode
    ("/v1/classify", '{"texts": [' + SURROGATE + "]}", "surrogate"),
    ("/v1/summarize", '{"texts": [' + SURROGATE + '], "stream": true}', "surrogate"),
    ("/v2/models/clf/infer", oip("[" + SURROGATE + "]"), "surrogate"),
    ("/v2/models/sum/generate", '{"text_input": ' + SURROGATE + "}", "surrogate"),
    ("/v1/models/clf:predict", '{"instances": [' + SURROGATE + "]}", "surrogate"),
    (OPENAI[0], chat(SURROGATE), "surrogate"),
    (OPENAI[1], completion(SURROGATE), "surrogate"),
    (OPENAI[1], completion('"hi"', ', "stop": [' + SURROGATE + "]"), "surrogate"),
    ("/v1/classify", b'{"texts": ["\xed\xa0\x80"]}', "utf-8"),  # a surrogate encoded as UTF-8 bytes
    # huge arrays (2 MB of integers)
    ("/v1/classify", '{"texts": [' + ",".join(["1"] * 1_000_000) + "]}", "elements"),
    ("/v2/models/clf/infer", oip("[" + ",".join(['""'] * 500_000) + "]"), "elements"),
    # wrong parameter types
    ("/v2/models/clf/infer", oip('["x"]', ', "parameters": "x"'), "parameters"),
    ("/v2/models/clf/infer", oip('["x"]', ', "parameters": []'), "parameters"),
    ("/v2/models/clf/infer", '{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"], '
                             '"parameters": "x"}]}', "parameters"),
    ("/v2/models/clf/infer", oip('["x"]', ', "outputs": [{"name": 5}]'), "outputs"),
    ("/v2/models/clf/infer", oip('["x"]', ', "outputs": [{"name": "label", "parameters": "x"}]'), "outputs"),
    ("/v2/models/clf/infer", oip('["x"]', ', "outputs": "label"'), "outputs"),
    ("/v2/models/clf/infer", oip('["x"]', ', "outputs": [5]'), "outputs"),
    ("/v2/models/sum/generate", '{"text_input": "hi", "parameters": "x"}', "parameters"),
    ("/v2/models/sum/generate_stream", '{"text_input": "hi", "parameters": [1]}', "parameters"),
    (OPENAI[0], chat('"hi"', ', "stop": 5'), "stop"),
    (OPENAI[0], chat('"hi"', ', "stream_options": "x"'), "stream_options"),
    # empty prompts
    (OPENAI[1], completion('""'), "empty"),
    # longer than limits.max_text_chars (100,000), refused before any tokenizing
    (OPENAI[1], completion('"' + "a" * 200_000 + '"'), "prompt length"),
    (OPENAI[0], chat('"' + "a " * 100_001 + '"'), "prompt length"),
    ("/v2/models/sum/generate", '{"text_input": ""}', "empty"),
    # numbers out of range
    (OPENAI[1], completion('"hi"', ', "seed": ' + str(2**70)), "seed"),
    (OPENAI[1], completion('"hi"', ', "seed": -1'), "seed"),
    (OPENAI[1], completion('"hi"', ', "max_tokens": ' + str(2**70)), "max_tokens"),
    (OPENAI[0], chat('"hi"', ', "temperature": 1e999'), "temperature"),
    (OPENAI[0], chat('"hi"', ', "top_p": NaN'), "top_p"),
    ("/v1/summarize", '{"texts": ["hi"], "max_new_tokens": ' + str(2**70) + "}", "max_new_tokens"),
    ("/v2/models/clf/infer", '{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [' + str(2**70)
                             + '], "data": ["x"]}]}', "shape"),
    ("/v2/models/sum/generate", '{"text_input": "hi", "parameters": {"seed": ' + str(2**70) + "}}", "seed"),
]


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
    raw = body if isinstance(body, bytes) else body.encode()
    r = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, f"{path} {probe}: {r.status_code} {r.text[:300]}"
    answer = r.json()
    if path.startswith("/openai/"):
        error = answer["error"]
        assert set(error) == {"message", "type", "param", "code"}, answer
        assert error["type"] == "invalid_request_error" and error["message"], answer
    else:
        assert isinstance(answer["error"], str) and answer["kind"] in ("invalid_input", "payload_too_large"), answer
        assert answer["error"], answer


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
        client.post(path, content=body if isinstance(body, bytes) else body.encode())
    r = client.post("/v1/classify", content=json.dumps({"texts": ["a b", "c"]}))
    assert r.status_code == 200 and [x["label"] for x in r.json()["results"]] == ["b", "a"], r.text
    r = client.post(OPENAI[1], content=completion('"one two"'))
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == "ONE TWO", r.text
