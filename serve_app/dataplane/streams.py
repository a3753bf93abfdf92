"""A token stream held to the rules of every other model call: it holds its admission ticket until it ends, it
ends at its deadline, and it is timed and counted when it ends.

A unary call does all of that inside one `await`; a stream ends later, in whichever way comes first: its done
event, a failure, its deadline, or the client leaving (the protocol closes it, or it is garbage-collected
unread). `WatchedEvents` reports that end exactly once to its `ended` callback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from serve_app.dataplane.generation import ended_badly
from serve_app.errors import DeadlineExceeded, InferenceFailed

# The `ended` outcome of a stream whose client left: neither an answer nor an error (as a cancelled unary call).
CANCELLED = object()

Outcome = Exception | object | None  # None: a clean done event; an exception: it failed; CANCELLED


class WatchedEvents:
    """`events` until their done event, a failure, or `expires` (time.monotonic()); past it the replica's
    generator is cancelled (and with it the sequence) and DeadlineExceeded is raised."""

    def __init__(self, events: AsyncIterator[dict], model: str, expires: float,
                 ended: Callable[[Outcome], None]):
        self._events, self._model, self._expires, self._ended = events, model, expires, ended
        self._open = True

    def __aiter__(self) -> WatchedEvents:
        return self

    async def __anext__(self) -> dict:
        timeout = asyncio.timeout_at(self._expires)  # the loop's clock is time.monotonic()
        try:
            async with timeout:
                event = await anext(self._events)
        except StopAsyncIteration:
            self._end(InferenceFailed(f"model '{self._model}' ended a stream without a done event"))
            raise
        except TimeoutError:
            if not timeout.expired():
                self._end(InferenceFailed(f"model '{self._model}' failed while generating"))
                raise
            err = DeadlineExceeded("the stream did not finish within its deadline")
            self._end(err)
            raise err from None
        except asyncio.CancelledError:
            self._end(CANCELLED)
            raise
        except Exception as err:
            self._end(err)
            raise
        if event["type"] == "done":
            self._end(ended_badly(event, self._model))
        return event

    def _end(self, outcome: Outcome) -> None:
        if self._open:
            self._open = False
            self._ended(outcome)

    async def aclose(self) -> None:
        """The client left (or the protocol is done): stop the replica's generator if it is still running."""
        self._end(CANCELLED)
        close = getattr(self._events, "aclose", None)
        if close is not None:
            await close()

    def __del__(self):
        # Never iterated nor closed (a client that left before the first byte): the ticket is given back all the
        # same; the replica's generator, collected with it, is closed by the event loop's async-generator hooks.
        self._end(CANCELLED)
