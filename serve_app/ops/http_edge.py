"""Limits at the HTTP edge, in Ray Serve's own proxy: header size and count, header and body read timeouts,
Host required on HTTP/1.1.

Ray's proxy serves HTTP with uvicorn over httptools, which takes headers of any size and number and never
times out a client that sends its request slowly (a connection held open at 1 byte/s costs the server a
socket and a parser forever). uvicorn has no settings for these, and Ray builds its `uvicorn.Config` itself,
but Ray calls a function named by RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH inside the proxy process before its
server starts (`proxy_callback` below). That function registers `EdgeProtocol`, httptools' protocol with the
limits added, as uvicorn's `auto` protocol in that process only (the model replicas are untouched).

The limits (config `server.http_edge`) travel to the proxy in GATEWAY_HTTP_EDGE, set with the callback's path
by `edge_env` before Ray starts. With `server.http_front: haproxy` HAProxy is the edge instead: its own limits
apply (headers within tune.bufsize, 16 KiB; at most 101 headers; Ray's `timeout http-request`).
"""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping

import httptools
import uvicorn.config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serve_app.config.server import HttpEdge

CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
LIMITS_ENV = "GATEWAY_HTTP_EDGE"
CALLBACK = f"{__name__}:proxy_callback"

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class _Refused(Exception):
    """Raised in a parser callback: the request breaks a limit; answered with `status` and closed."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class EdgeProtocol(HttpToolsProtocol):
    """httptools' uvicorn protocol, with header limits, a Host check and read timeouts."""

    limits = HttpEdge()

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._reading_headers = False
        self._header_bytes = 0
        self._header_count = 0
        self._timer = None
        self._arm(self.limits.header_timeout_s, "the request's headers did not arrive")

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    # -- timeouts: headers from the connection (or the request's first byte) to their end; body between chunks --
    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._timed_out, what, seconds)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self, what: str, seconds: float) -> None:
        self._timer = None
        self._refuse(408, f"{what} within {seconds:g} s")

    # -- parser callbacks --------------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_headers = True
        self._header_bytes = 0
        self._header_count = 0
        if self._timer is None:  # a keep-alive connection's next request: its headers get the same time
            self._arm(self.limits.header_timeout_s, "the request's headers did not arrive")

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            raise _Refused(431, f"more than {self.limits.max_headers} header fields")
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.limits.max_header_bytes:
            raise _Refused(431, f"request line and headers exceed {self.limits.max_header_bytes} bytes")

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        if self.parser.get_http_version() == "1.1" and not any(name == b"host" for name, _ in self.headers):
            raise _Refused(400, "HTTP/1.1 requests must carry a Host header")
        self._arm(self.limits.body_timeout_s, "the request's body did not arrive")
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._arm(self.limits.body_timeout_s, "the request's body did not arrive")
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        """As httptools' protocol does, except that a limit a callback enforced is answered with its status."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as err:  # a callback's exception comes back as its context
            refusal = err.__context__
            if not isinstance(refusal, _Refused):
                refusal = _Refused(400, "invalid HTTP request")
            self._refuse(refusal.status, refusal.message)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` with a JSON body in the gateway's error shape, and close the connection."""
        self._disarm()
        if self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # too late for a status: the app is already answering
            return
        body = json.dumps({"error": message, "kind": "http_error"}).encode()
        head = (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                % (status, _REASONS[status], len(body)))
        self.transport.write(head + body)
        self.transport.close()
        if self.cycle is not None:
            self.cycle.disconnected = True
            self.cycle.message_event.set()


def edge_env(limits: HttpEdge, env: MutableMapping[str, str] = os.environ) -> None:
    """Ask Ray's proxy (started after this) to run `proxy_callback` with these limits."""
    env[CALLBACK_ENV] = CALLBACK
    env[LIMITS_ENV] = limits.model_dump_json()


def proxy_callback() -> list:
    """Run by Ray in its proxy process before the HTTP server starts: the edge protocol becomes uvicorn's
    `auto` one there. Returns no middlewares (what Ray expects this hook to return)."""
    raw = os.environ.get(LIMITS_ENV)
    EdgeProtocol.limits = HttpEdge.model_validate_json(raw) if raw else HttpEdge()
    uvicorn.config.HTTP_PROTOCOLS["auto"] = f"{__name__}:EdgeProtocol"
    return []

