"""Hostile input through a real Ray Serve over loopback (issue 30), on tiny random-weight models with the real
tokenizers: every hostile body on every route is a 4xx (R9), good requests batched beside bad ones answer
what they answer alone (R8), /healthz stays fast while big hostile bodies arrive (R10), and Ray's proxy
enforces the HTTP edge limits (R11: a 1 byte/s client is cut off at the header timeout)."""

from __future__ import annotations

import concurrent.futures
import socket
import statistics
import threading
import time
from urllib.parse import urlparse

import grpc
import pytest
from support.hostile import CASES, SURROGATE, check_refusal, completion, raw
from support.serve import gateway_fixture

from serve_app.bench.stats import percentile
from serve_app.config import parse_config
from serve_app.config.server import HttpEdge
from serve_app.config.settings import GatewaySettings
from serve_app.protocols.grpc_stubs import service_pb2 as pb


def config(tiny_models):
    return parse_config({
        "server": {"limits": {"max_texts": 16, "max_body_bytes": 4 * 1024 * 1024}},
        "models": [
            {"name": "clf", "task": "classification", "source": "tiny-classifier", "max_length": 32,
             "batching": {"max_batch_size": 16, "batch_wait_timeout_s": 0.05},
             "resources": {"num_cpus": 0.1, "num_gpus": 0}},
            {"name": "sum", "task": "summarization", "source": "tiny-summarizer", "max_length": 64,
             "resources": {"num_cpus": 0.1, "num_gpus": 0},
             "generation": {"max_new_tokens": 4, "max_new_tokens_limit": 8}},
        ],
        "pipelines": [{"name": "stc", "graph": {"type": "chain", "steps": [
            {"node": {"type": "model", "model": "sum"}},
            {"node": {"type": "model", "model": "clf"}, "input": "summary"}]}}],
    }, settings=GatewaySettings(models_dir=tiny_models))


gateway = gateway_fixture(config)
GOOD = [f"Story {i}: shares in the bank rose after the results." for i in range(15)]


def test_every_hostile_body_on_every_route_is_a_4xx(gateway):  # R9
    failures = []
    for path, body, probe in CASES:
        r = gateway.post(path, content=raw(body), headers={"content-type": "application/json"})
        try:
            check_refusal(path, r.status_code, r.json())
        except (AssertionError, ValueError) as err:
            failures.append(f"{path} ({probe}): {r.status_code} {r.text[:200]} {err}")
    assert not failures, "\n".join(failures)


def test_a_bad_text_fails_alone_and_good_ones_in_its_batch_answer_as_alone(gateway):  # R8
    alone = {t: gateway.post("/v1/classify", json={"texts": [t]}).json()["results"][0]["label"] for t in GOOD}
    bad = '{"texts": [' + SURROGATE + "]}"

    def call(i):
        if i == 7:
            return gateway.post("/v1/classify", content=bad)
        return gateway.post("/v1/classify", json={"texts": [GOOD[i if i < 7 else i - 1]]})

    for _ in range(3):
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(call, range(16)))
        assert answers[7].status_code == 400 and "surrogate" in answers[7].json()["error"], answers[7].text
        good = [a for i, a in enumerate(answers) if i != 7]
        assert all(a.status_code == 200 for a in good), [a.text for a in good if a.status_code != 200]
        assert [a.json()["results"][0]["label"] for a in good] == [alone[t] for t in GOOD]


def test_a_bad_prompt_never_ends_other_streams(gateway):
    def stream(i):
        if i % 4 == 0:
            return gateway.post("/openai/v1/completions", content=completion('""', ', "stream": true'))
        return gateway.post("/openai/v1/completions", json={"model": "sum", "prompt": f"Once upon a time {i}",
                                                           "max_tokens": 4, "stream": True})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(stream, range(8)))
    for i, a in enumerate(answers):
        if i % 4 == 0:
            assert a.status_code == 400 and a.json()["error"]["param"] == "prompt", a.text
        else:
            assert a.status_code == 200 and a.text.rstrip().endswith("data: [DONE]"), a.text
            assert '"finish_reason":"length"' in a.text or '"finish_reason":"stop"' in a.text, a.text


def test_healthz_stays_fast_while_big_hostile_bodies_arrive(gateway):  # R10
    bodies = [raw(b) for _, b, probe in CASES if probe in ("elements", "deep")]
    paths = [p for p, _, probe in CASES if probe in ("elements", "deep")]
    stop = threading.Event()
    sent = []

    def attack():
        import httpx

        with httpx.Client(base_url=str(gateway.base_url), timeout=30) as c:
            while not stop.is_set():
                for path, body in zip(paths, bodies, strict=True):
                    sent.append(c.post(path, content=body).status_code)

    attacker = threading.Thread(target=attack, daemon=True)
    attacker.start()
    latencies = []
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            started = time.perf_counter()
            assert gateway.get("/healthz").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.02)
    finally:
        stop.set()
        attacker.join(30)
    assert sent and all(400 <= s < 500 for s in sent), sorted(set(sent))
    p99 = percentile(latencies, 99)
    print(f"R10: /healthz p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms over "
          f"{len(latencies)} probes while {len(sent)} hostile bodies arrived")
    assert p99 <= 0.1, f"/healthz p99 {p99 * 1000:.0f} ms over {len(latencies)} probes, {len(sent)} hostile bodies"


def test_grpc_garbage_and_huge_tensors_are_invalid_argument(gateway, grpc_target):
    with grpc.insecure_channel(grpc_target) as channel:
        raw_infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as err:
            raw_infer(b"\xff\xff\xff\xff not protobuf", timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
        assert "protobuf" in err.value.details() and "Error" not in err.value.details().split(":")[0]
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                    request_serializer=pb.ModelInferRequest.SerializeToString,
                                    response_deserializer=pb.ModelInferResponse.FromString)
        request = pb.ModelInferRequest(model_name="clf")
        tensor = request.inputs.add(name="text", datatype="BYTES", shape=[1_000_000])
        tensor.contents.bytes_contents.extend([b""] * 1_000_000)
        started = time.perf_counter()
        with pytest.raises(grpc.RpcError) as err:
            infer(request, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit" in err.value.details()
        assert time.perf_counter() - started < 5
        ok = pb.ModelInferRequest(model_name="clf")
        ok.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"hello")
        assert infer(ok, timeout=30).outputs[0].name


# -- the HTTP edge, in Ray's proxy ---------------------------------------------------------------------------------
def _address(gateway) -> tuple[str, int]:
    url = urlparse(str(gateway.base_url))
    return url.hostname, url.port


def _exchange(address, data: bytes) -> bytes:
    with socket.create_connection(address, timeout=15) as s:
        s.sendall(data)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_headers_past_the_limits_and_a_missing_host_are_refused_by_the_proxy(gateway):
    address = _address(gateway)
    assert _exchange(address, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 1_048_576
                     + b"\r\n\r\n").startswith(b"HTTP/1.1 431")
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(2000))
    assert _exchange(address, b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + many + b"\r\n").startswith(b"HTTP/1.1 431")
    assert _exchange(address, b"GET /healthz HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert _exchange(address, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").startswith(b"HTTP/1.1 200")


def test_no_redirect_takes_its_host_from_the_request(gateway):
    r = gateway.get("/v1/models/", headers={"Host": "evil.example"}, follow_redirects=False)
    assert "location" not in r.headers and r.status_code == 404, (r.status_code, dict(r.headers))


def test_a_client_sending_1_byte_per_second_is_closed_at_the_header_timeout(gateway):  # R11
    limit = HttpEdge().header_timeout_s
    started = time.perf_counter()
    answer = b""
    with socket.create_connection(_address(gateway), timeout=limit + 5) as s:
        s.settimeout(1.0)
        for byte in b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 60:
            try:
                s.sendall(bytes([byte]))
                chunk = s.recv(4096)
            except TimeoutError:
                continue  # a second passed: the next byte
            except OSError:
                break
            answer += chunk
            if not chunk:
                break
    elapsed = time.perf_counter() - started
    print(f"R11: a 1 byte/s client was answered 408 and closed after {elapsed:.1f} s (header timeout {limit} s)")
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert elapsed <= limit + 1.5, f"closed after {elapsed:.1f} s; the header timeout is {limit} s"
