"""Token streaming, continuous batching and the OpenAI API through a real Ray Serve, on tiny random llamas: the
same tests for every engine installed (`chat`: torch on a Hugging Face folder; `chat-gguf`: llama.cpp on a GGUF;
`chat-vllm`: vLLM, eager, on a Hugging Face folder with 64-wide heads)."""

from __future__ import annotations

import importlib.util
import json
import time

import httpx
import openai
import pytest
from support.serve import gateway_fixture

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings

HAS_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None
HAS_VLLM = importlib.util.find_spec("vllm") is not None
CHATS = ["chat", *(["chat-gguf"] if HAS_LLAMA_CPP else []), *(["chat-vllm"] if HAS_VLLM else [])]
ARTICLE = "The central bank raised interest rates again on Tuesday, citing stubborn inflation."
OTHER = "The striker scored twice in the cup final as the home side won."


def gateway_config(tiny_models):
    return parse_config({"models": [
        {"name": "chat", "task": "summarization", "source": "tiny-chatty", "max_length": 64,
         "resources": {"num_cpus": 0.1, "num_gpus": 0, "threads": 1},
         # Two slots: the disconnect test shows a cancelled stream gives its slot back.
         "generation": {"max_new_tokens": 12, "max_new_tokens_limit": 400, "max_running": 2, "prefill_chunk": 16}},
        *([{"name": "chat-gguf", "task": "summarization", "source": "tiny-gguf", "max_length": 64,
            "resources": {"num_cpus": 0.1, "num_gpus": 0, "threads": 1},
            "generation": {"max_new_tokens": 12, "max_new_tokens_limit": 400, "max_running": 2, "prefill_chunk": 16}}]
          if HAS_LLAMA_CPP else []),
        *([{"name": "chat-vllm", "task": "summarization", "source": "tiny-vllm", "runtime": "vllm", "max_length": 64,
            "resources": {"num_cpus": 0.1, "num_gpus": 0, "threads": 1},
            "generation": {"max_new_tokens": 12, "max_new_tokens_limit": 400, "max_running": 2, "compile": False}}]
          if HAS_VLLM else []),
        {"name": "clf", "task": "classification", "source": "tiny-classifier", "max_length": 32,
         "resources": {"num_cpus": 0.1, "num_gpus": 0}},
    ]}, settings=GatewaySettings(models_dir=tiny_models))


gateway = gateway_fixture(gateway_config, timeout=120)


@pytest.fixture(params=CHATS)
def chat(request) -> str:
    """The summarizer under test: every test taking it runs once per engine."""
    return request.param


@pytest.fixture(scope="module")
def oai(gateway):
    return openai.OpenAI(base_url=str(gateway.base_url).rstrip("/") + "/openai/v1", api_key="unused", max_retries=0)


def sse_events(response: httpx.Response) -> list[tuple[str, dict]]:
    events, name = [], "message"
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    return events


def test_streamed_summary_equals_the_whole_one(gateway, chat):
    whole = gateway.post("/v1/summarize", json={"model": chat, "texts": [ARTICLE], "max_new_tokens": 20})
    assert whole.status_code == 200, whole.text
    expected = whole.json()["results"][0]
    with gateway.stream("POST", "/v1/summarize", json={"model": chat, "texts": [ARTICLE], "max_new_tokens": 20,
                                                       "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-model-version"] == whole.json()["version"]
        events = sse_events(r)
    tokens = [data for name, data in events if name == "token"]
    assert len(tokens) > 1 and [name for name, _ in events][-1] == "done"
    done = events[-1][1]
    assert "".join(t["text"] for t in tokens) == done["summary"] == expected["summary"] != ""
    assert done["generated_tokens"] == expected["generated_tokens"] == 20
    assert done["finish_reason"] == expected["finish_reason"] == "length"


def test_a_stream_carries_one_text_and_bad_parameters_are_400(gateway):
    r = gateway.post("/v1/summarize", json={"texts": [ARTICLE, OTHER], "stream": True})
    assert r.status_code == 400 and r.json()["kind"] == "invalid_input" and "one" in r.json()["error"]
    r = gateway.post("/v1/summarize", json={"texts": [ARTICLE], "stream": True, "max_new_tokens": 0})
    assert r.status_code == 400 and r.json()["field"] == "max_new_tokens"


def test_a_request_joining_a_running_batch_gets_what_it_gets_alone(gateway, chat):
    body = {"model": chat, "texts": [OTHER], "max_new_tokens": 16}
    alone = gateway.post("/v1/summarize", json=body).json()["results"][0]
    with gateway.stream("POST", "/v1/summarize", json={"model": chat, "texts": [ARTICLE], "max_new_tokens": 120,
                                                       "stream": True}) as long_run:
        lines = long_run.iter_lines()
        while not next(lines).startswith("data: "):  # the long sequence is decoding now
            pass
        joined = gateway.post("/v1/summarize", json=body).json()["results"][0]
        rest = [line for line in lines if line.startswith("data: ")]
    assert joined == alone
    assert json.loads(rest[-1][6:])["generated_tokens"] == 120  # the long one went on to the end


def engine_stats(gateway, chat: str) -> dict:
    [version] = gateway.get(f"/v1/models/{chat}").json()["versions"]
    return version["engine"]


def test_a_client_leaving_mid_stream_cancels_its_sequence_and_frees_the_slot(gateway, chat):
    before = engine_stats(gateway, chat)["finished"].get("cancelled", 0)
    with gateway.stream("POST", "/v1/summarize", json={"model": chat, "texts": [ARTICLE], "max_new_tokens": 400,
                                                       "stream": True}) as r:
        lines = r.iter_lines()
        while not next(lines).startswith("data: "):
            pass
    # The connection is closed. Wait (bounded) for the replica to report the cancellation.
    for _ in range(600):
        stats = engine_stats(gateway, chat)
        if stats["finished"].get("cancelled", 0) > before:
            break
        time.sleep(0.1)
    assert stats["finished"].get("cancelled", 0) == before + 1
    assert stats["running"] == 0 and stats["waiting"] == 0
    assert gateway.post("/v1/summarize", json={"model": chat, "texts": [OTHER], "max_new_tokens": 3}).status_code == 200


def test_openai_client_lists_the_summarization_models(oai, gateway):
    ids = [m.id for m in oai.models.list()]
    expected = []
    for chat in CHATS:
        [version] = gateway.get(f"/v1/models/{chat}").json()["versions"]
        expected += [chat, f"{chat}@{version['version']}"]
    assert sorted(ids) == sorted(expected)  # the classifier is not a generative model
    assert oai.models.retrieve("chat").id == "chat"


def test_openai_chat_completions_stream_and_not(oai, chat):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": ARTICLE}]
    whole = oai.chat.completions.create(model=chat, messages=messages, max_tokens=15, temperature=0)
    text = whole.choices[0].message.content
    assert whole.object == "chat.completion" and text and whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 15 and whole.usage.total_tokens == whole.usage.prompt_tokens + 15
    chunks = list(oai.chat.completions.create(model=chat, messages=messages, max_tokens=15, temperature=0,
                                              stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 15


def test_openai_completions_stream_and_not_keep_whitespace_and_honour_stop(oai, chat):
    whole = oai.completions.create(model=chat, prompt="Once upon a time", max_tokens=12, temperature=0)
    text = whole.choices[0].text
    assert whole.object == "text_completion" and len(text) > 6
    streamed = oai.completions.create(model=chat, prompt="Once upon a time", max_tokens=12, temperature=0,
                                      stream=True)
    assert "".join(c.choices[0].text for c in streamed) == text
    stop = text[4:7]
    cut = oai.completions.create(model=chat, prompt="Once upon a time", max_tokens=12, stop=[stop])
    assert cut.choices[0].text == text[: text.find(stop)] and cut.choices[0].finish_reason == "stop"


def test_openai_seeded_sampling_is_reproducible_on_a_pinned_version(oai):
    pinned = next(m.id for m in oai.models.list() if m.id.startswith("chat@"))

    def sample(seed):
        return oai.completions.create(model=pinned, prompt="Hello", max_tokens=10, temperature=1.2, top_p=0.9,
                                      seed=seed).choices[0].text

    assert sample(5) == sample(5) != sample(6)


def test_openai_errors_have_openai_shape(oai, gateway):
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.BadRequestError) as bad:
        oai.chat.completions.create(model="chat", messages=messages, max_tokens=-1)
    assert bad.value.body["code"] == "invalid_input" and bad.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError, match="n=1"):
        oai.chat.completions.create(model="chat", messages=messages, n=2)
    with pytest.raises(openai.BadRequestError, match="classification"):
        oai.completions.create(model="clf", prompt="x")
    with pytest.raises(openai.NotFoundError) as missing:
        oai.completions.create(model="nope", prompt="x")
    assert missing.value.body["code"] == "model_not_found"
    r = gateway.post("/openai/v1/completions", json={"model": "chat", "prompt": "x", "temperature": 9})
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert r.json()["error"]["type"] == "invalid_request_error" and r.json()["error"]["param"] == "temperature"


def test_oip_generate_and_generate_stream_give_the_same_text(gateway, chat):
    body = {"text_input": ARTICLE, "parameters": {"max_tokens": 14, "temperature": 0}}
    whole = gateway.post(f"/v2/models/{chat}/generate", json=body)
    assert whole.status_code == 200, whole.text
    expected = gateway.post("/v1/summarize", json={"model": chat, "texts": [ARTICLE], "max_new_tokens": 14}).json()
    assert whole.json()["text_output"] == expected["results"][0]["summary"]
    assert whole.json()["model_version"] == expected["version"]
    with gateway.stream("POST", f"/v2/models/{chat}/generate_stream", json=body) as r:
        events = [data for _, data in sse_events(r)]
    assert "".join(e["text_output"] for e in events) == whole.json()["text_output"]
    assert "".join(e["summary"] for e in events) == whole.json()["summary"] == whole.json()["text_output"]
    assert events[-1]["finish_reason"] == "length"
    # The input name the model's metadata declares (`text`) works like Triton's `text_input`.
    metadata = gateway.get(f"/v2/models/{chat}").json()
    named = gateway.post(f"/v2/models/{chat}/generate", json={metadata["inputs"][0]["name"]: ARTICLE,
                                                               "parameters": body["parameters"]})
    assert named.status_code == 200 and named.json()["summary"] == whole.json()["summary"]
    assert "summary" in {o["name"] for o in metadata["outputs"]}
    odd = gateway.post(f"/v2/models/{chat}/generate", json={"text": ARTICLE, "parameters": "x"})
    assert odd.status_code == 400 and odd.json()["field"] == "parameters"
    bad = gateway.post(f"/v2/models/{chat}/generate", json={"text_input": ARTICLE, "parameters": {"max_tokens": -2}})
    assert bad.status_code == 400 and bad.json()["kind"] == "invalid_input"
    assert gateway.post("/v2/models/nope/generate", json=body).status_code == 404


def test_triton_grpc_stream_gives_the_streamed_text(gateway, grpc_target, chat):
    import queue

    import numpy as np
    import tritonclient.grpc as tgrpc

    expected = gateway.post("/v1/summarize", json={"model": chat, "texts": [ARTICLE], "max_new_tokens": 14}).json()
    got: queue.Queue = queue.Queue()
    client = tgrpc.InferenceServerClient(grpc_target)
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    try:
        def request(text: str, max_tokens: int) -> None:
            inp = tgrpc.InferInput("text", [1], "BYTES")
            inp.set_data_from_numpy(np.array([text.encode()], dtype=np.object_))
            # tritonclient sends `triton_enable_empty_final_response` as a request parameter.
            client.async_stream_infer(chat, [inp], parameters={"max_tokens": max_tokens},
                                      enable_empty_final_response=True)

        request(ARTICLE, 14)
        deltas = []
        while True:
            result, error = got.get(timeout=120)
            assert error is None, error
            response = result.get_response()
            if response.parameters["triton_final_response"].bool_param:
                break
            deltas.append(result.as_numpy("text_output")[0].decode())
        assert "".join(deltas) == expected["results"][0]["summary"]
        assert response.parameters["finish_reason"].string_param == "length"
        assert response.model_version == expected["version"]
        request(ARTICLE, -1)  # a bad request answers an error on the stream, and the stream goes on
        result, error = got.get(timeout=120)
        assert result is None and "max_new_tokens" in str(error)
    finally:
        client.stop_stream()
        client.close()
