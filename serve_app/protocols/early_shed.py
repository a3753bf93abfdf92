"""Shedding before parsing: a request that admission would refuse anyway gets its 429 before FastAPI routes it,
resolves its dependencies and validates its body.

Under overload most requests of the lowest class are refused (dataplane/admission.py), and a refusal that runs
the whole HTTP stack costs the ingress nearly what an answer does: measured at 4x a classifier's capacity, the
ingress spent about 30% of a core refusing ~160 requests a second, CPU the high class then waited for on a
2-core machine. Triton and Envoy refuse at the queue too, before the request is decoded.

Only requests whose fate is already certain are judged here, with the same controller and the same numbers as
the full path (`Inference.shed_early`); anything else - a body naming its own `priority`, a body too big to
peek at, a bad token, a model with a response cache or variant selection, a route that is not a model's
inference - goes through the app unchanged, which names the problem if there is one.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import orjson

from serve_app.dataplane.deadlines import TIMEOUT_HEADER
from serve_app.dataplane.priority import CURRENT, HEADER, parse_priority
from serve_app.errors import GatewayError, Overloaded
from serve_app.protocols.auth import check_bearer
from serve_app.tasks import TASKS

# Bodies up to this size are read here (they are read whole anyway); larger ones go through the app.
MAX_PEEK_BYTES = 64 * 1024
OIP_INFER = re.compile(r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer")
TASK_ROUTES = {t.route: t.name for t in TASKS.values() if t.route}


def target_of(path: str, body: bytes) -> tuple[str, str | None] | None:
    """(the model as named, with "@version" when pinned; the task of its route, None on OIP) or None where the
    request's target cannot be read cheaply and for sure."""
    task = TASK_ROUTES.get(path)
    if task is not None:
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        model = value.get("model") if isinstance(value, dict) else None
        return (model, task) if model is None or isinstance(model, str) else None
    found = OIP_INFER.fullmatch(path)
    if found is None:
        return None
    version = found["version"]
    return (found["name"] + (f"@{version}" if version else ""), None)


class EarlyShed:
    """ASGI middleware; `respond(error, path)` makes the refusal's response, as the app's error handler does."""

    def __init__(self, app, get_dataplane: Callable, respond: Callable, inference_token: str | None = None):
        self.app, self.get_dataplane, self.respond, self.token = app, get_dataplane, respond, inference_token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not self._candidate(scope):
            return await self.app(scope, receive, send)
        body, ended = await self._read(receive)
        pending = [{"type": "http.request", "body": body, "more_body": ended is not None}, *([ended] if ended else [])]

        async def replay():  # what was read here, then the client's own messages
            return pending.pop(0) if pending else await receive()

        if ended is None and b'"priority"' not in body:  # a body's own priority outranks the header
            refusal = self._refusal(scope, body)
            if refusal is not None:
                return await self.respond(refusal, scope["path"])(scope, replay, send)
        return await self.app(scope, replay, send)

    def _candidate(self, scope) -> bool:
        """A model inference route, a small body, a valid token, a readable class."""
        if scope["path"] not in TASK_ROUTES and OIP_INFER.fullmatch(scope["path"]) is None:
            return False
        headers = dict(scope["headers"])
        try:
            size = int(headers.get(b"content-length", b""))
            check_bearer(self.token, headers.get(b"authorization", b"").decode("latin-1"), "inference")
            priority = parse_priority(headers.get(HEADER.encode(), b"").decode("latin-1") or None, HEADER)
        except (ValueError, GatewayError):
            return False
        CURRENT.set(priority)  # the full path sets it again from the same header
        return size <= MAX_PEEK_BYTES

    @staticmethod
    async def _read(receive) -> tuple[bytes, dict | None]:
        """The body, and the message that ended it early (the client went away), if one did."""
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), message
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks), None

    def _refusal(self, scope, body: bytes) -> Overloaded | None:
        target = target_of(scope["path"], body)
        if target is None:
            return None
        try:
            dp = self.get_dataplane()
            timeout = dict(scope["headers"]).get(TIMEOUT_HEADER.encode(), b"").decode("latin-1") or None
            dp.inference.shed_early(*target, dp.deadlines.deadline_s(timeout))
        except Overloaded as err:
            return err
        except Exception:  # noqa: BLE001 - not ready, a bad timeout, anything else: the full path answers
            return None
        return None
