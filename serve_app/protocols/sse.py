"""Server-sent events: framing, and the `"stream": true` form of a streaming task's route (/v1/summarize).

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
from serve_app.dataplane.generation import GenerationStream, ended_badly
from serve_app.errors import GatewayError, InferenceFailed, InvalidInput
from serve_app.protocols.json_body import parse_body
from serve_app.tasks import TaskContract

log = logging.getLogger("ray.serve")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

__all__ = ["SSE_HEADERS", "ended_badly", "frame", "guarded", "task_stream"]


def frame(data: dict | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return ((f"event: {event}\n" if event else "") + f"data: {payload}\n\n").encode()


async def guarded(stream: GenerationStream) -> AsyncIterator[dict]:
    """The stream's events; a failure mid-stream becomes a final {"type": "error"} event (headers are sent).
    However it ends - answered, failed, or closed because the client left - the stream is closed, which stops
    the replica's generation and gives its admission slot back."""
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
    finally:
        await stream.aclose()


async def task_stream(dp: DataPlane, task: TaskContract, body: object, deadline_s: float) -> StreamingResponse:
    """One text of `task`'s route body, answered as server-sent events; the done event carries the fields an
    unstreamed answer's record has."""
    req = parse_body(task.request, body)
    dp.inference.check_texts(req.texts)
    if len(req.texts) != 1:
        raise InvalidInput(f"texts: a stream carries one answer; got {len(req.texts)} texts (send one, or drop "
                           "\"stream\")", field="texts")
    request = task.stream_request(req.texts[0], task.request_params(req))
    stream = await dp.deadlines.within(deadline_s, dp.inference.open_stream(req.model, request, deadline_s,
                                                                            task.name))
    start = stream.start

    async def events():
        async for event in guarded(stream):
            if event["type"] == "token":
                yield frame({"text": event["text"], "generated_tokens": event["completion_tokens"]}, "token")
            elif event["type"] == "done":
                yield frame({"model": stream.model, "version": stream.version, task.text_output: event["text"],
                             **task.stream_result(start, event)}, "done")
            else:
                yield frame(event["error"].to_body(), "error")

    headers = {**SSE_HEADERS, "X-Model-Name": stream.model, "X-Model-Version": stream.version}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
