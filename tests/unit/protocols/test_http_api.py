"""The HTTP adapter and dataplane over in-process fake backends: every bad input gets a typed 4xx JSON error."""

import asyncio
import json

import httpx
import pytest
from support.fakes import FakeBackend, labelled, prefixes, routes_of

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.dataplane import DataPlane
from serve_app.protocols.http_app import create_app

CONFIG = {
    "server": {"limits": {"max_texts": 4, "max_text_chars": 50, "max_body_bytes": 2048}},
    "models": [
        {"name": "clf", "task": "classification", "source": "clf"},
        {"name": "sum", "task": "summarization", "source": "sum",
         "generation": {"max_new_tokens": 8, "max_new_tokens_limit": 16}},
    ],
}


def classifier(**kw):
    return FakeBackend("clf-v1", labelled("a", score=1.0, truncated=False), **kw)


def summarizer(**kw):
    return FakeBackend("sum-v1", prefixes(3, truncated=False), **kw)


def backend(dp, name):
    [entry] = dp.table.routes[name].versions.values()
    return entry.backend


def make_client(**backends):
    config = parse_config(CONFIG, settings=GatewaySettings())
    dp = DataPlane(config, routes_of({"clf": classifier(), "sum": summarizer(), **backends}))
    transport = httpx.ASGITransport(app=create_app(lambda: dp), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test"), dp


def call(method, path, **kw):
    async def go():
        client, dp = make_client(**kw.pop("backends", {}))
        async with client:
            return await client.request(method, path, **kw), dp
    return asyncio.run(go())


def test_classify_routes_to_the_default_classifier_and_names_the_version():
    r, dp = call("POST", "/v1/classify", json={"texts": ["hello", "world"]})
    assert r.status_code == 200
    assert r.headers["x-model-name"] == "clf" and r.headers["x-model-version"] == "clf-v1"
    assert r.json()["model"] == "clf" and len(r.json()["results"]) == 2
    assert backend(dp, "clf").calls == [(["hello", "world"], {})]


def test_summarize_uses_configured_default_and_requested_max_new_tokens():
    r, dp = call("POST", "/v1/summarize", json={"texts": ["abcdef"]})
    assert r.status_code == 200 and r.json()["results"][0]["summary"] == "abc"
    r2, dp2 = call("POST", "/v1/summarize", json={"texts": ["abcdef"], "max_new_tokens": 16, "model": "sum"})
    assert backend(dp, "sum").calls[0][1] == {"max_new_tokens": 8}
    assert backend(dp2, "sum").calls[0][1] == {"max_new_tokens": 16}


BAD_REQUESTS = [
    ("/v1/classify", b"{not json", 400, "not valid JSON"),
    ("/v1/classify", b"", 400, "body is empty"),
    ("/v1/classify", b"\xff\xfe{}", 400, "UTF-8"),
    ("/v1/classify", b"[1, 2]", 400, "JSON object"),
    ("/v1/classify", json.dumps({"texts": "one string"}).encode(), 400, "texts"),
    ("/v1/classify", json.dumps({"texts": [1, 2]}).encode(), 400, "texts.0"),
    ("/v1/classify", json.dumps({"texts": []}).encode(), 400, "texts"),
    ("/v1/classify", json.dumps({"texts": ["ok", "  "]}).encode(), 400, "texts.1: text is empty"),
    ("/v1/classify", json.dumps({"texts": ["x"] * 5}).encode(), 400, "limit is 4"),
    ("/v1/classify", json.dumps({"texts": ["x" * 51]}).encode(), 400, "51 characters"),
    ("/v1/classify", json.dumps({"text": ["x"]}).encode(), 400, "unknown field"),
    ("/v1/classify", json.dumps({"texts": ["x"], "model": "nope"}).encode(), 404, "'nope' is not served"),
    ("/v1/classify", json.dumps({"texts": ["x"], "model": "sum"}).encode(), 400, "does summarization"),
    ("/v1/summarize", json.dumps({"texts": ["x"], "max_new_tokens": 0}).encode(), 400, "between 1 and 16"),
    ("/v1/summarize", json.dumps({"texts": ["x"], "max_new_tokens": 17}).encode(), 400, "between 1 and 16"),
    ("/v1/summarize", json.dumps({"texts": ["x"], "max_new_tokens": "5"}).encode(), 400, "max_new_tokens"),
    ("/v1/summarize", json.dumps({"texts": ["x"], "max_new_tokens": 2.5}).encode(), 400, "max_new_tokens"),
    ("/v1/classify", b"{" + b" " * 3000 + b"}", 413, "limit is 2048"),
]


@pytest.mark.parametrize("path, body, status, fragment", BAD_REQUESTS)
def test_bad_input_gets_a_typed_json_error(path, body, status, fragment):
    r, dp = call("POST", path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]
    assert "Traceback" not in r.text and "Error'" not in r.text
    assert not backend(dp, "clf").calls and not backend(dp, "sum").calls, "bad input must not reach a model"


def test_model_failure_is_a_generic_500_without_internals():
    broken = classifier(error=RuntimeError("secret internal detail"))
    r, _ = call("POST", "/v1/classify", json={"texts": ["x"]}, backends={"clf": broken})
    assert r.status_code == 500
    assert r.json()["kind"] == "internal" and "secret" not in r.text and "RuntimeError" not in r.text


def test_unknown_route_and_wrong_method_are_json():
    r, _ = call("GET", "/v1/nothing")
    assert r.status_code == 404 and "no route" in r.json()["error"]
    r, _ = call("GET", "/v1/classify")
    assert r.status_code == 405 and "not allowed" in r.json()["error"]


def test_models_listing_and_readiness():
    r, _ = call("GET", "/v1/models")
    assert r.status_code == 200
    assert {m["name"]: m["ready"] for m in r.json()["models"]} == {"clf": True, "sum": True}
    assert call("GET", "/readyz")[0].status_code == 200
    assert call("GET", "/healthz")[0].json() == {"live": True}
    r, _ = call("GET", "/v1/models/sum")
    assert r.json()["versions"][0]["version"] == "sum-v1" and r.json()["task"] == "summarization"
    assert call("GET", "/v1/models/zzz")[0].status_code == 404


def test_readiness_fails_with_503_when_a_model_does_not_answer():
    down = {"sum": summarizer(info_error=ConnectionError("replica down"))}
    r, _ = call("GET", "/readyz", backends=down)
    assert r.status_code == 503 and r.json()["models"] == ["sum"]
    r, _ = call("GET", "/v1/models", backends=down)
    assert {m["name"]: m["ready"] for m in r.json()["models"]} == {"clf": True, "sum": False}
