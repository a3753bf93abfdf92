"""Source records in, output and dead-letter records out: one JSON object per line.

A source line is a JSON object with a text field (default `text`) and optionally a key field (default `id`).
Records keep their key; a record without one is keyed by the hash of its line, so replays map to one key.
Output:      {"key", "result", "model", "version", "latency_ms", "attempts", "mode"}
Dead letter: {"key", "reason", "error", "status"?, "record"}  - reason is one of REASONS.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

# Why a record went to the dead-letter output; stable names that alerting and replays can rely on.
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_FIELD = "missing_field"
REJECTED = "rejected"              # the gateway answered 4xx for this record alone
DEADLINE_EXCEEDED = "deadline_exceeded"  # retried until the per-record deadline, never answered
GATEWAY_ERROR = "gateway_error"    # 5xx other than 503/504, after the allowed attempts
REASONS = (INVALID_JSON, NOT_AN_OBJECT, MISSING_FIELD, REJECTED, DEADLINE_EXCEEDED, GATEWAY_ERROR)
MAX_RECORD_CHARS = 2000  # how much of a bad line the dead letter keeps: enough to find it, not a second copy


@dataclass
class Record:
    key: str
    text: str
    arrived: float = 0.0  # time.monotonic() when the enrichment operator received it (latency, deadline)
    attempts: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Schema:
    text_field: str = "text"
    key_field: str = "id"


def line_key(line: str) -> str:
    return "sha256:" + hashlib.sha256(line.encode("utf-8", "replace")).hexdigest()[:16]


def parse_line(line: str, schema: Schema = Schema()) -> Record | dict:
    """A Record, or a dead-letter dict naming what is wrong with the line. Never raises."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as err:
        return dead_letter(line_key(line), INVALID_JSON, f"not valid JSON: {err}", record=line)
    if not isinstance(obj, dict):
        return dead_letter(line_key(line), NOT_AN_OBJECT, f"expected a JSON object, got {type(obj).__name__}",
                           record=line)
    raw_key = obj.get(schema.key_field)
    key = line_key(line) if raw_key is None else str(raw_key)
    text = obj.get(schema.text_field)
    if not isinstance(text, str):
        problem = "is missing" if text is None else f"is {type(text).__name__}, not a string"
        return dead_letter(key, MISSING_FIELD, f"field '{schema.text_field}' {problem}", record=line)
    return Record(key, text)


def output(record: Record, result: dict, model: str, version: str | None, latency_ms: float, mode: str) -> dict:
    return {"key": record.key, "result": result, "model": model, "version": version,
            "latency_ms": round(latency_ms, 3), "attempts": record.attempts, "mode": mode}


def dead_letter(key: str, reason: str, error: str, status: int | None = None, record: str | None = None) -> dict:
    letter = {"key": key, "reason": reason, "error": error}
    if status is not None:
        letter["status"] = status
    if record is not None:
        letter["record"] = record[:MAX_RECORD_CHARS]
    return letter


def is_dead_letter(obj: dict) -> bool:
    return "reason" in obj


def dumps(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
