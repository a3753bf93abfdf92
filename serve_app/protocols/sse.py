"""Server-sent events: framing, and the `"stream": true` form of /v1/summarize.

    event: token   data: {"text": "<delta>", "generated_tokens": n}      one per chunk of tokens
    event: done    data: {the non-streamed result fields, plus model and version}
    event: error   data: {"error": "...", "kind": "..."}                  an error after the first byte
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse

from serve_app.dataplane import DataPlane
from serve_app.dataplane.generation import GenerationStream
from serve_app.errors import DeadlineExceeded, GatewayError, InferenceFailed, InvalidInput
from serve_app.protocols.json_body import parse_body
from serve_app.tasks.summarization import SummarizeRequest

log = logging.getLogger("ray.serve")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def frame(data: dict | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return ((f"event: {event}\n" if event else "") + f"data: {payload}\n\n").encode()


def ended_badly(done: dict, model: str) -> GatewayError | None:
    """The error a `done` event stands for, if it did not end normally."""
    reason = done["finish_reason"]
    if reason == "deadline":
        return DeadlineExceeded("the stream did not finish within its deadline")
    if reason in ("error", "cancelled"):
        return InferenceFailed(f"model '{model}' failed while generating; see the server log")
    return None


async def guarded(stream: GenerationStream) -> AsyncIterator[dict]:
    """The stream's events; a failure mid-stream becomes a final {"type": "error"} event (headers are sent)."""
    try:
        async for event in stream.events:
            if event["type"] == "done" and (err := ended_badly(event, stream.model)) is not None:
                yield {"type": "error", "error": err}
                return
            yield event
    except GatewayError as err:
        yield {"type": "error", "error": err}
    except Exception:  # noqa: BLE001 - logged here; the client gets a generic message
        log.exception("stream from %s failed", stream.model)
        yield {"type": "error", "error": InferenceFailed(f"model '{stream.model}' failed; see the server log")}


async def summarize_stream(dp: DataPlane, body: object, deadline_s: float) -> StreamingResponse:
    req = parse_body(SummarizeRequest, body)
    dp.inference.check_texts(req.texts)
    if len(req.texts) != 1:
        raise InvalidInput(f"texts: a stream carries one summary; got {len(req.texts)} texts (send one, or drop "
                           "\"stream\")", field="texts")
    stream = await dp.deadlines.within(deadline_s, dp.inference.open_stream(
        req.model, {"kind": "summary", "text": req.texts[0], "params": {"max_new_tokens": req.max_new_tokens}},
        deadline_s))
    start = stream.start

    async def events():
        async for event in guarded(stream):
            if event["type"] == "token":
                yield frame({"text": event["text"], "generated_tokens": event["completion_tokens"]}, "token")
            elif event["type"] == "done":
                yield frame({"model": stream.model, "version": stream.version, "summary": event["text"],
                             "truncated": start["truncated"], "input_tokens": start["input_tokens"],
                             "generated_tokens": event["completion_tokens"],
                             "finish_reason": event["finish_reason"]}, "done")
            else:
                yield frame(event["error"].to_body(), "error")

    headers = {**SSE_HEADERS, "X-Model-Name": stream.model, "X-Model-Version": stream.version}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
