"""Token streams under the rules of unary calls: admission (429 + Retry-After, RESOURCE_EXHAUSTED on gRPC), the
ticket held until the stream ends or its client leaves, deadlines that cancel the replica's generation, and the
same error and duration metrics."""

from __future__ import annotations

import asyncio
import gc
import json

import httpx
import pytest
from support.fakes import FakeStreamer, MemoryMetrics
from support.servers import Context, Servicer

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.dataplane import DataPlane
from serve_app.dataplane.priority import NORMAL
from serve_app.dataplane.routing import ModelRoutes
from serve_app.protocols.grpc_stubs import service_pb2 as pb
from serve_app.protocols.http_app import create_app
from serve_app.protocols.tensors import pack_bytes

CONFIG = {"models": [{"name": "sum", "task": "summarization", "source": "s",
                      "resources": {"max_ongoing_requests": 1, "max_queue_wait_s": 0.05},
                      "generation": {"max_new_tokens": 8, "max_new_tokens_limit": 16}}]}
STREAMS = [("/v1/summarize", {"texts": ["a b c"], "stream": True}),
           ("/openai/v1/completions", {"model": "sum", "prompt": "a b c", "stream": True}),
           ("/openai/v1/chat/completions", {"model": "sum", "messages": [{"role": "user", "content": "a b"}],
                                            "stream": True}),
           ("/v2/models/sum/generate_stream", {"text": "a b c"})]


def gateway(token_delay_s=0.0):
    fake, metrics = FakeStreamer(token_delay_s), MemoryMetrics()
    routes = {"sum": ModelRoutes("sum")}
    routes["sum"].add("2", fake, 1.0)
    dp = DataPlane(parse_config(CONFIG, settings=GatewaySettings()), routes, metrics=metrics)
    return dp, fake, metrics


def slot(dp):
    return dp.table.admission.controller(dp.table.model("sum"), "2")


def overload(dp):
    """One stream running, one second each: the next would wait ~1 s, over max_queue_wait_s."""
    ctl = slot(dp)
    ctl.service_s, ctl.held_by_class[NORMAL] = 1.0, 1
    return ctl


async def post(dp, path, body, headers=None):
    transport = httpx.ASGITransport(app=create_app(lambda: dp))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.post(path, json=body, headers=headers)


def stream_request(text="a b c"):
    inp = pb.ModelInferRequest.InferInputTensor(name="text", datatype="BYTES", shape=[1])
    return pb.ModelInferRequest(model_name="sum", inputs=[inp], raw_input_contents=[pack_bytes([text.encode()])])


def grpc_stream(dp, metadata=()):
    async def go():
        async def one():
            yield stream_request()
        return [r async for r in Servicer(dp).ModelStreamInfer(one(), Context(metadata))]
    return asyncio.run(go())


@pytest.mark.parametrize(("path", "body"), STREAMS, ids=[p for p, _ in STREAMS])
def test_an_overloaded_model_refuses_a_stream_with_429_and_retry_after(path, body):
    dp, fake, metrics = gateway()
    ctl = overload(dp)
    r = asyncio.run(post(dp, path, body))
    assert r.status_code == 429 and r.headers["retry-after"] == "1", r.text
    assert "overloaded" in r.text and fake.requests == [], "refused before the replica hears of it"
    assert ctl.held == 1 and metrics.total("gateway_errors", model="sum", kind="overloaded") == 1


def test_an_overloaded_model_refuses_a_grpc_stream_request_with_resource_exhausted():
    dp, fake, _ = gateway()
    overload(dp)
    [reply] = grpc_stream(dp)
    params = reply.infer_response.parameters
    assert "at capacity" in reply.error_message and params["grpc_status"].string_param == "RESOURCE_EXHAUSTED"
    assert params["retry_after"].int64_param == 1 and params["error_kind"].string_param == "overloaded"


def test_a_finished_stream_gives_its_ticket_back_and_records_its_duration():
    dp, _, metrics = gateway()
    r = asyncio.run(post(dp, *STREAMS[0]))
    assert r.status_code == 200 and "event: done" in r.text
    assert slot(dp).held == 0 and slot(dp).service_s is not None, "a clean end teaches the service time"
    assert [n for op, n, lab, _ in metrics.records if op == "observe" and lab["model"] == "sum"] == [
        "gateway_request_duration_seconds"]


def test_a_stream_given_up_by_its_reader_or_never_read_gives_its_ticket_back():
    dp, fake, _ = gateway(token_delay_s=0.05)

    async def go():
        stream = await dp.inference.open_stream("sum", {"text": "a b c d"}, 5.0)
        assert slot(dp).held == 1
        await anext(stream.events)
        await stream.aclose()  # what the protocols do when the client leaves
        assert slot(dp).held == 0 and fake.closed == 1
        await dp.inference.open_stream("sum", {"text": "a b"}, 5.0)  # dropped unread
        gc.collect()
        assert slot(dp).held == 0

    asyncio.run(go())


def test_a_client_that_disconnects_mid_stream_frees_the_slot_and_the_sequence():
    dp, fake, metrics = gateway(token_delay_s=0.05)
    app = create_app(lambda: dp)
    first_chunk, held_while_streaming = asyncio.Event(), []
    messages = [{"type": "http.request", "body": json.dumps(STREAMS[0][1]).encode(), "more_body": False}]

    async def receive():
        if messages:
            return messages.pop()
        await first_chunk.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.body" and message.get("body"):
            held_while_streaming.append(slot(dp).held)
            first_chunk.set()

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/summarize", "raw_path": b"/v1/summarize", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json")], "server": ("t", 80), "client": ("c", 1)}
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 5))
    assert held_while_streaming[0] == 1 and slot(dp).held == 0 and fake.closed == 1
    assert metrics.total("gateway_errors") == 0, "a client leaving is not a server error"


def test_a_stream_past_its_deadline_ends_with_a_typed_error_and_cancels_the_sequence():
    dp, fake, metrics = gateway(token_delay_s=0.1)
    r = asyncio.run(post(dp, "/v1/summarize", {"texts": ["a b c d e f g h"], "stream": True},
                         headers={"x-request-timeout": "0.25"}))
    events = [b.split("\n") for b in r.text.split("\n\n") if b]
    assert [e[0] for e in events][-1] == "event: error" and "event: token" in events[0][0]
    assert json.loads(events[-1][1][6:])["kind"] == "deadline_exceeded"
    assert fake.closed == 1 and slot(dp).held == 0
    assert metrics.total("gateway_errors", model="sum", kind="deadline_exceeded") == 1


def test_a_grpc_stream_past_its_deadline_answers_deadline_exceeded():
    dp, fake, _ = gateway(token_delay_s=0.1)
    replies = grpc_stream(dp, [("x-request-timeout", "0.25")])
    last = replies[-1]
    assert last.error_message and last.infer_response.parameters["grpc_status"].string_param == "DEADLINE_EXCEEDED"
    assert fake.closed == 1 and slot(dp).held == 0


def test_an_error_mid_stream_counts_as_an_error_of_the_model():
    dp, _, metrics = gateway()
    r = asyncio.run(post(dp, "/v1/summarize", {"texts": ["fine then boom"], "stream": True}))
    assert r.status_code == 200 and "event: error" in r.text
    assert metrics.total("gateway_errors", model="sum", kind="internal") == 1 and slot(dp).held == 0
