"""Pipelines through the HTTP adapter and the config, over in-process fake models."""

import asyncio

import httpx
import pytest
from support.fakes import FakeBackend, labelled, prefixes, routes_of

from serve_app.config import ConfigError, parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.dataplane import DataPlane
from serve_app.protocols.http_app import create_app

CONFIG = {
    "models": [{"name": "summarizer", "task": "summarization", "source": "s",
                "generation": {"max_new_tokens": 8, "max_new_tokens_limit": 16}},
               {"name": "classifier", "task": "classification", "source": "c"}],
    "pipelines": [{"name": "stc", "description": "summary, then its topic",
                   "graph": {"type": "chain", "steps": [
                       {"node": {"type": "model", "model": "summarizer"}},
                       {"node": {"type": "model", "model": "classifier"}, "input": "summary"}]}}],
}


def request(method, path, **kw):
    config = parse_config(CONFIG, settings=GatewaySettings())
    fakes = {"summarizer": FakeBackend("7", prefixes(5), info={}),
             "classifier": FakeBackend("3", labelled("x", probabilities={"x": 1.0}), info={})}
    app = create_app(lambda: DataPlane(config, routes_of(fakes)))

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.request(method, path, **kw)
    return asyncio.run(go()), fakes


def test_run_a_pipeline_with_trace():
    r, fakes = request("POST", "/v1/pipelines/stc", json={"texts": ["abcdefgh"], "trace": True})
    assert r.status_code == 200, r.text
    assert r.json()["results"] == [{"text": "abcdefgh", "summary": "abcde", "label": "x",
                                    "probabilities": {"x": 1.0}}]
    trace = {e["node"]: e for e in r.json()["trace"]}
    assert trace["graph.steps[0]"]["version"] == "7" and trace["graph.steps[1]"]["version"] == "3"
    assert fakes["summarizer"].params == [{"max_new_tokens": 8}], "config defaults reach pipeline model calls"
    r, _ = request("POST", "/v1/pipelines/stc", json={"texts": ["abc"]})
    assert "trace" not in r.json()


def test_list_and_describe_pipelines():
    r, _ = request("GET", "/v1/pipelines")
    [p] = r.json()["pipelines"]
    assert p["name"] == "stc" and p["graph"]["type"] == "chain"
    assert set(p["output_fields"]) == {"text", "summary", "label", "score", "probabilities"}


@pytest.mark.parametrize("path, body, status, fragment", [
    ("/v1/pipelines/nope", {"texts": ["x"]}, 404, "known pipelines: stc"),
    ("/v1/pipelines/stc", {"texts": []}, 400, "texts"),
    ("/v1/pipelines/stc", {"texts": ["x"], "trace": "yes"}, 400, "trace"),
])
def test_pipeline_bad_requests(path, body, status, fragment):
    r, _ = request("POST", path, json=body)
    assert r.status_code == status and fragment in r.json()["error"]


def test_config_refuses_a_pipeline_that_feeds_labels_to_a_summarizer():
    bad = {**CONFIG, "pipelines": [{"name": "bad", "graph": {"type": "chain", "steps": [
        {"node": {"type": "model", "model": "classifier"}},
        {"node": {"type": "model", "model": "summarizer"}, "input": "label"}]}}]}
    with pytest.raises(ConfigError, match=r"pipeline 'bad', node 'graph.steps\[1\]': feeds 'label'"):
        parse_config(bad, settings=GatewaySettings())
