"""A second generation task is one contract: declared here (a chat-like "reply" task, registered for the test
only), it is served by the config, stream routing, SSE on its own route, OIP generate, Triton's gRPC stream, the
OpenAI API and pipelines, with no edit anywhere else."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from support.fakes import FakeStreamer
from support.servers import Context, Servicer

from serve_app.config import ConfigError, parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.dataplane import DataPlane
from serve_app.dataplane.routing import ModelRoutes
from serve_app.pipelines.validate import PipelineError, check_pipelines
from serve_app.protocols.grpc_stubs import service_pb2 as pb
from serve_app.protocols.http_app import create_app
from serve_app.protocols.schemas import TextsRequest
from serve_app.protocols.tensors import pack_bytes
from serve_app.tasks import TASKS, Output, contract
from serve_app.tasks.contract import concatenated


class ReplyRequest(TextsRequest):
    max_new_tokens: int | None = None
    stream: bool = False


# A chat-like task: its own output names, request kind, route and window join; a summarizer's parameters and
# runtime (the replica side is not what this tests).
REPLY = replace(
    contract("summarization"), name="reply", request=ReplyRequest, route="/v1/reply", stream_kind="reply",
    outputs=(Output("reply", "BYTES", field_type="text"),
             *(o for o in contract("summarization").outputs if o.field_type != "text")),
    window_join=concatenated("reply", "replies"), quality_metric=None)
CONFIG = {"models": [
    {"name": "talk", "task": "reply", "source": "t", "generation": {"max_new_tokens": 3, "max_new_tokens_limit": 8}},
    {"name": "clf", "task": "classification", "source": "c"}]}


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setitem(TASKS, "reply", REPLY)  # removed again after the test
    return FakeStreamer()


@pytest.fixture
def dataplane(fake):
    routes = {"talk": ModelRoutes("talk"), "clf": ModelRoutes("clf")}
    routes["talk"].add("2", fake, 1.0)
    routes["clf"].add("1", FakeStreamer(), 1.0)
    return DataPlane(parse_config(CONFIG, settings=GatewaySettings()), routes)


@pytest.fixture
def client(dataplane):
    return TestClient(create_app(lambda: dataplane))


def test_the_config_takes_a_generation_block_for_any_task_that_streams(fake):
    assert parse_config(CONFIG).models[0].generation_settings.max_new_tokens == 3
    with pytest.raises(ConfigError, match="'generation' applies to task .*'reply'"):
        parse_config({"models": [{"name": "c", "task": "classification", "source": "c",
                                  "generation": {"max_new_tokens": 3}}]})


def test_streams_route_to_the_task_by_name_or_by_its_route(dataplane, fake):
    async def first_request(requested, task=None):
        stream = await dataplane.inference.open_stream(requested, {"text": "a b"}, 5.0, task)
        await stream.collect()
        return stream.model, fake.requests[-1]

    model, request = asyncio.run(first_request("talk"))
    assert model == "talk" and request["kind"] == "reply" and request["params"]["max_new_tokens"] == 3
    assert asyncio.run(first_request(None, "reply"))[0] == "talk"  # the task's default model


def test_sse_on_the_task_route_ends_with_the_task_output(client):
    r = client.post("/v1/reply", json={"texts": ["a b c d"], "stream": True})
    assert r.status_code == 200 and r.headers["x-model-name"] == "talk"
    done = [b for b in r.text.split("\n\n") if b.startswith("event: done")]
    assert '"reply":"A B C"' in done[0] and '"finish_reason":"length"' in done[0]


def test_oip_generate_answers_the_output_the_metadata_declares(client):
    assert {o["name"] for o in client.get("/v2/models/talk").json()["outputs"]} >= {"reply"}
    r = client.post("/v2/models/talk/generate", json={"text": "a b", "parameters": {"max_tokens": 2}})
    assert r.status_code == 200 and r.json()["reply"] == r.json()["text_output"] == "A B"
    r = client.post("/v2/models/talk/generate_stream", json={"text_input": "a b"})
    assert r.status_code == 200 and '"reply":"A"' in r.text


def test_the_grpc_stream_and_the_openai_api_serve_it(client, dataplane, fake):
    inp = pb.ModelInferRequest.InferInputTensor(name="text", datatype="BYTES", shape=[1])
    req = pb.ModelInferRequest(model_name="talk", inputs=[inp], raw_input_contents=[pack_bytes([b"x y"])])

    async def replies():
        async def one():
            yield req
        return [r async for r in Servicer(dataplane).ModelStreamInfer(one(), Context())]

    out = asyncio.run(replies())
    assert [r.error_message for r in out] == ["", "", ""] and fake.requests[-1]["kind"] == "reply"
    assert out[-1].infer_response.parameters["triton_final_response"].bool_param
    assert [m["id"] for m in client.get("/openai/v1/models").json()["data"]] == ["talk", "talk@2"]
    r = client.post("/openai/v1/completions", json={"model": "talk", "prompt": "p q"})
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == "P Q"


def test_pipelines_join_its_windows_by_its_contract(fake):
    split = {"name": "long", "graph": {"type": "split", "mode": "serial", "node": {"type": "model", "model": "talk"},
                                       "reduce": {"type": "model", "model": "talk"}}}
    check_pipelines([parse_config({**CONFIG, "pipelines": [split]}).pipelines[0]], {"talk": "reply"})
    echo_split = {**split, "graph": {**split["graph"], "node": {"type": "model", "model": "clf"}}}
    with pytest.raises((PipelineError, ConfigError), match="reduce takes the joined summaries or replies"):
        parse_config({**CONFIG, "pipelines": [echo_split]})
