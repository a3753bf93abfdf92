"""The HTTP edge protocol (serve_app/ops/http_edge.py) on a real uvicorn server over loopback, raw sockets as
the client: header size and count, Host on HTTP/1.1, slow headers and slow bodies. The same limits through
Ray's proxy: tests/integration/test_hostile_ray.py."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI, Request

from serve_app.config.server import HttpEdge
from serve_app.ops.http_edge import EdgeProtocol

LIMITS = HttpEdge(max_header_bytes=4096, max_headers=20, header_timeout_s=1.0, body_timeout_s=1.0)


@pytest.fixture(scope="module")
def server():
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request):
        return {"bytes": len(await request.body())}

    @app.get("/ok")
    async def ok():
        return {"ok": True}

    EdgeProtocol.limits = LIMITS
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=EdgeProtocol, log_level="critical", lifespan="off", timeout_keep_alive=5)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.02)
    yield sock.getsockname()[1]
    srv.should_exit = True
    thread.join(5)
    EdgeProtocol.limits = HttpEdge()


def exchange(port: int, raw: bytes, timeout: float = 5.0) -> tuple[int, dict | bytes, float]:
    """Send `raw`, read until the server closes (or answers once); (status, body, seconds until the end)."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")]
            if length and len(body) >= length[0]:
                break
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    try:
        return status, json.loads(body), time.perf_counter() - started
    except ValueError:
        return status, body, time.perf_counter() - started


def test_a_normal_request_and_keep_alive_work(server):
    status, body, _ = exchange(server, b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 200 and body == {"ok": True}
    status, body, _ = exchange(server, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
    assert status == 200 and body == {"bytes": 5}


def test_headers_over_the_size_limit_are_431(server):
    status, body, _ = exchange(server, b"GET /ok HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 1_048_576 + b"\r\n\r\n")
    assert status == 431 and "4096 bytes" in body["error"] and body["kind"] == "http_error"


def test_too_many_headers_are_431(server):
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(2000))
    status, body, _ = exchange(server, b"GET /ok HTTP/1.1\r\nHost: t\r\n" + many + b"\r\n")
    assert status == 431 and "20 header fields" in body["error"]


def test_http11_without_host_is_400_and_http10_needs_none(server):
    status, body, _ = exchange(server, b"GET /ok HTTP/1.1\r\n\r\n")
    assert status == 400 and "Host" in body["error"]
    status, body, _ = exchange(server, b"GET /ok HTTP/1.0\r\n\r\n")
    assert status == 200 and body == {"ok": True}


def test_a_client_sending_headers_at_1_byte_per_second_is_cut_off_at_the_header_timeout(server):
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", server), timeout=10) as s:
        answer = b""
        for byte in b"GET /ok HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100:
            try:
                s.sendall(bytes([byte]))
                s.settimeout(0.25)
                chunk = s.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            answer += chunk
            if not chunk or b"\r\n\r\n" in answer:
                break
    elapsed = time.perf_counter() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert elapsed < LIMITS.header_timeout_s + 1.0, elapsed


def test_a_body_that_stops_arriving_is_408(server):
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", server), timeout=10) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nhalf")
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert time.perf_counter() - started < LIMITS.body_timeout_s + 1.0
