"""Request bodies from bytes: the size limit, UTF-8, JSON, and a schema, each refused with a typed error that
names the problem. Every HTTP adapter reads its body through here."""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from serve_app.config import Limits
from serve_app.errors import InvalidInput, PayloadTooLarge

T = TypeVar("T", bound=BaseModel)


def decode_json(raw: bytes, limits: Limits) -> object:
    if len(raw) > limits.max_body_bytes:
        raise PayloadTooLarge(f"request body is {len(raw)} bytes; the limit is {limits.max_body_bytes}")
    if not raw.strip():
        raise InvalidInput("request body is empty; send a JSON object such as {\"texts\": [\"...\"]}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInput(f"request body is not valid UTF-8 (byte {err.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidInput(f"request body is not valid JSON: {err.msg} at line {err.lineno} "
                           f"column {err.colno}") from None


def check_declared_size(request: Request, limits: Limits) -> None:
    """Refuse an oversized body by its Content-Length, before reading it into memory."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limits.max_body_bytes}")


async def read_json(request: Request, limits: Limits) -> object:
    check_declared_size(request, limits)
    return decode_json(await request.body(), limits)


def describe_error(error: dict, schema: type[BaseModel]) -> tuple[str, str]:
    where = ".".join(str(p) for p in error["loc"]) or "body"
    if error["type"] == "extra_forbidden":
        return where, f"{where}: unknown field; allowed: " + ", ".join(schema.model_fields)
    return where, f"{where}: {error['msg']}"


def parse_body(schema: type[T], body: object) -> T:
    """`body` validated against a request schema; InvalidInput names the first problems."""
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object such as {\"texts\": [\"...\"]}")
    try:
        return schema.model_validate(body)
    except ValidationError as err:
        problems = [describe_error(e, schema) for e in err.errors()[:5]]
        raise InvalidInput("; ".join(p for _, p in problems), field=problems[0][0]) from None
