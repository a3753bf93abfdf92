"""Hostile input on every HTTP route, in process over fakes (issue 30): deep nesting, invalid Unicode, huge
arrays, wrong parameter types, empty prompts and overflowing numbers each get a 4xx in the route's own error
shape (OpenAI's on /openai/v1), naming the problem; none is a 500. The same bodies through a real Ray Serve,
with good requests batched beside them: tests/integration/test_hostile_ray.py."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from fastapi.testclient import TestClient
from support.fakes import CHAIN_CONFIG, FakeBackend, FakeStreamer, topics
from support.hostile import CASES, DEEP, OPENAI, SURROGATE, check_refusal, completion, oip, raw
from support.servers import Context, Servicer, grpc_call

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.dataplane import DataPlane
from serve_app.dataplane.routing import ModelRoutes
from serve_app.protocols.grpc_stubs import Malformed
from serve_app.protocols.grpc_stubs import service_pb2 as pb
from serve_app.protocols.http_app import create_app
from serve_app.protocols.tensors import pack_bytes


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


# -- the same over OIP gRPC (unary and Triton's stream), through the servicer the ingress runs --------------------
def _grpc_dataplane():
    config = parse_config(CHAIN_CONFIG, settings=GatewaySettings())
    routes = {"clf": ModelRoutes("clf"), "sum": ModelRoutes("sum")}
    routes["clf"].add("5", FakeBackend("5", topics, info={}), 1.0)
    routes["sum"].add("2", FakeStreamer(), 1.0)
    return DataPlane(config, routes)


def _infer(model="clf", items=(b"hi",), raw=None, shape=None, **params):
    req = pb.ModelInferRequest(model_name=model)
    tensor = req.inputs.add(name="text", datatype="BYTES", shape=shape or [len(items)])
    if raw is not None:
        req.raw_input_contents.append(raw)
    else:
        tensor.contents.bytes_contents.extend(items)
    for key, (kind, value) in params.items():
        setattr(req.parameters[key], kind, value)
    return req


GRPC_UNARY = [
    ("invalid UTF-8", _infer(items=[b"\xed\xa0\x80"])),
    ("shape mismatch", _infer(items=[b"a", b"b"], shape=[2**40])),
    ("too many elements", _infer(items=[b""] * 100_000)),
    ("truncated binary tensor", _infer(raw=b"\x05\x00\x00\x00ab")),
    ("too many binary elements", _infer(raw=pack_bytes([b""] * 100_000), shape=[100_000])),
    ("garbage bytes", Malformed("Error parsing message")),
    ("no inputs", pb.ModelInferRequest(model_name="clf")),
]
GRPC_STREAM = [
    ("max_tokens as a string", _infer("sum", max_tokens=("string_param", "x"))),
    ("max_tokens too large", _infer("sum", max_tokens=("int64_param", 2**62))),
    ("seed past 2^63", _infer("sum", seed=("uint64_param", 2**64 - 1))),
    ("temperature as a bool", _infer("sum", temperature=("bool_param", True))),
    ("unknown parameter", _infer("sum", frobnicate=("string_param", "x"))),
    ("invalid UTF-8", _infer("sum", items=[b"\xff\xfe"])),
    ("two texts", _infer("sum", items=[b"a", b"b"])),
    ("garbage bytes", Malformed("Error parsing message")),
]


@pytest.mark.parametrize(("probe", "request_"), GRPC_UNARY, ids=[p for p, _ in GRPC_UNARY])
def test_hostile_grpc_infer_is_invalid_argument(probe, request_):
    ctx, _ = grpc_call(Servicer(_grpc_dataplane()), "ModelInfer", request_)
    assert ctx.code == grpc.StatusCode.INVALID_ARGUMENT, (probe, ctx.code, ctx.details)
    assert ctx.details and "Error" not in ctx.details.split(":")[0], ctx.details


@pytest.mark.parametrize(("probe", "request_"), GRPC_STREAM, ids=[p for p, _ in GRPC_STREAM])
def test_hostile_grpc_stream_requests_fail_alone_with_invalid_argument(probe, request_):
    async def go():
        async def requests():
            yield request_
            yield _infer("sum", items=[b"one two"])  # a good request after it, on the same stream
        return [r async for r in Servicer(_grpc_dataplane()).ModelStreamInfer(requests(), Context())]

    replies = asyncio.run(go())
    first, rest = replies[0], replies[1:]
    assert first.error_message, (probe, first)
    assert first.infer_response.parameters["grpc_status"].string_param == "INVALID_ARGUMENT", (probe, first)
    text = b"".join(r.infer_response.raw_output_contents[0][4:] for r in rest if r.infer_response.raw_output_contents)
    assert text == b"ONE TWO" and not any(r.error_message for r in rest), (probe, rest)
