"""Per-request deadlines, shared by every transport: what a request may ask for, and running work under one."""

from __future__ import annotations

import asyncio
import contextvars
import math
import time

from serve_app.config import Limits
from serve_app.errors import DeadlineExceeded, InvalidInput
from serve_app.metrics import Metrics

TIMEOUT_HEADER = "x-request-timeout"  # HTTP: the seconds a request may take (gRPC: its own deadline)

# When the request being served must be answered (time.monotonic()), set by `Deadlines.within`: admission
# refuses a model call that would wait past it.
DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("gateway_deadline", default=None)


def seconds_left() -> float | None:
    deadline = DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


class Deadlines:
    def __init__(self, limits: Limits, metrics: Metrics):
        self.limits = limits
        self.metrics = metrics

    def deadline_s(self, requested: str | None) -> float:
        """A request's deadline in seconds from what it asked for (text, seconds), within the configured bounds."""
        limits = self.limits
        if requested is None or not requested.strip():
            return limits.request_timeout_s
        try:
            value = float(requested)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= 0:
            raise InvalidInput(f"request timeout {requested[:40]!r}: give a positive number of seconds, at most "
                               f"{limits.max_request_timeout_s:g}", field="timeout")
        return min(value, limits.max_request_timeout_s)

    async def within(self, timeout_s: float, work):
        """Run `work` under a deadline. Past it the work is cancelled (and with it the model calls it awaits,
        which Ray Serve cancels in turn) and the client gets 504 / DEADLINE_EXCEEDED."""
        token = DEADLINE.set(time.monotonic() + timeout_s)
        try:
            return await asyncio.wait_for(work, timeout_s)
        except TimeoutError:
            self.metrics.inc("gateway_errors", {"model": "", "pipeline": "", "kind": DeadlineExceeded.kind})
            raise DeadlineExceeded(f"the request did not finish within its deadline of {timeout_s:g} s") from None
        finally:
            DEADLINE.reset(token)
