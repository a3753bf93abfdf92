"""Hostile request bodies for every HTTP route (issue 30), shared by the in-process suite
(tests/unit/protocols/test_hostile_http.py) and the one through a real Ray Serve (test_hostile_ray.py).
Routes name a classifier "clf", a summarizer "sum" and a pipeline "stc"; bodies are up to ~2 MB."""

from __future__ import annotations

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


def check_refusal(path: str, status: int, answer: dict) -> None:
    """A 4xx in the route's own error shape: OpenAI's under /openai/v1, the gateway's elsewhere."""
    assert 400 <= status < 500, f"{path}: {status} {answer}"
    if path.startswith("/openai/"):
        error = answer["error"]
        assert set(error) == {"message", "type", "param", "code"}, answer
        assert error["type"] == "invalid_request_error" and error["message"], answer
    else:
        assert isinstance(answer["error"], str) and answer["error"], answer
        assert answer["kind"] in ("invalid_input", "payload_too_large"), answer


def raw(body: str | bytes) -> bytes:
    return body if isinstance(body, bytes) else body.encode()
