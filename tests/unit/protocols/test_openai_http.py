"""The OpenAI API and SSE adapters over an in-process fake token stream, driven by the stock `openai` client."""

from __future__ import annotations

import openai
import pytest
from fastapi.testclient import TestClient
from support.fakes import FakeStreamer

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.dataplane import DataPlane
from serve_app.dataplane.routing import ModelRoutes
from serve_app.protocols.http_app import create_app

CONFIG = {"models": [
    {"name": "sum", "task": "summarization", "source": "s", "generation": {"max_new_tokens": 8,
                                                                          "max_new_tokens_limit": 16}},
    {"name": "clf", "task": "classification", "source": "c"}]}


@pytest.fixture
def fake():
    return FakeStreamer()


@pytest.fixture
def client(fake):
    config = parse_config(CONFIG, settings=GatewaySettings())
    routes = {"sum": ModelRoutes("sum"), "clf": ModelRoutes("clf")}
    routes["sum"].add("2", fake, 1.0)
    routes["clf"].add("1", FakeStreamer(), 1.0)
    dataplane = DataPlane(config, routes)
    return TestClient(create_app(lambda: dataplane))


@pytest.fixture
def oai(client):
    return openai.OpenAI(base_url="http://testserver/openai/v1", api_key="x", http_client=client, max_retries=0)


def test_models_list_names_summarizers_and_their_versions(oai):
    assert [m.id for m in oai.models.list()] == ["sum", "sum@2"]
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("clf")


def test_chat_stream_equals_chat_whole_and_reports_usage(oai, fake):
    messages = [{"role": "user", "content": "one two three four"}]
    whole = oai.chat.completions.create(model="sum", messages=messages, max_tokens=3)
    assert whole.choices[0].message.content == "ONE TWO THREE" and whole.choices[0].finish_reason == "length"
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens, whole.usage.total_tokens) == (4, 3, 7)
    chunks = list(oai.chat.completions.create(model="sum", messages=messages, max_tokens=3, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "ONE TWO THREE"
    assert chunks[-1].usage.total_tokens == 7
    assert fake.requests[-1]["params"]["temperature"] == 0.0  # greedy unless asked


def test_completion_parameters_reach_the_replica(oai, fake):
    out = oai.completions.create(model="sum@2", prompt="a b", max_tokens=5, temperature=0.7, top_p=0.5, seed=3,
                                 stop="x")
    assert out.choices[0].text == "A B" and out.choices[0].finish_reason == "stop"
    params = fake.requests[-1]["params"]
    assert (params["max_new_tokens"], params["temperature"], params["top_p"], params["seed"], params["stop"],
            params["strip"]) == (5, 0.7, 0.5, 3, ["x"], False)


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"max_tokens": -1}, "max_tokens"), ({"max_tokens": 17}, "max_new_tokens"), ({"n": 2}, "n"),
    ({"temperature": 3.0}, "temperature"), ({"top_p": 0.0}, "top_p"), ({"stop": ["a"] * 5}, "stop")])
def test_bad_parameters_are_400_in_openai_shape(oai, kwargs, param):
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(model="sum", messages=[{"role": "user", "content": "hi"}], **kwargs)
    assert err.value.body["type"] == "invalid_request_error" and err.value.body["param"] == param


def test_unknown_and_wrong_task_models_and_refused_prompts(oai, client):
    with pytest.raises(openai.NotFoundError) as missing:
        oai.completions.create(model="nope", prompt="x")
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="classification"):
        oai.completions.create(model="clf", prompt="x")
    with pytest.raises(openai.BadRequestError, match="9999 tokens"):
        oai.completions.create(model="sum", prompt="too long")
    r = client.post("/openai/v1/chat/completions", json={"model": "sum", "messages": []})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = client.get("/openai/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"


def test_a_failure_mid_stream_is_an_error_event_without_details(oai, client):
    with pytest.raises(openai.APIError, match="failed"):
        list(oai.completions.create(model="sum", prompt="fine then boom", stream=True))
    r = client.post("/v1/summarize", json={"texts": ["fine then boom"], "stream": True})
    assert r.status_code == 200 and "event: error" in r.text and "secret" not in r.text


def test_summarize_stream_events(client):
    r = client.post("/v1/summarize", json={"texts": ["a b c"], "stream": True, "max_new_tokens": 2})
    assert r.headers["content-type"].startswith("text/event-stream") and r.headers["x-model-version"] == "2"
    blocks = [b for b in r.text.split("\n\n") if b]
    assert [b.split("\n")[0] for b in blocks] == ["event: token", "event: token", "event: done"]
    assert '"summary":"A B"' in blocks[-1] and '"finish_reason":"length"' in blocks[-1]
