"""The one engine interface every generation task sees, and the loop that engines share.

An engine takes a `Sequence` (prompt token ids, sampling parameters, a `sink`) and calls `sink(event)` from its
own thread for every event: `{"type": "token", "text": <delta>, "completion_tokens": n}` any number of times,
then one `{"type": "done", "text", "finish_reason", "prompt_tokens", "completion_tokens", "ttft_s", "tpot_s"}`.
`cancel(seq)` ends a sequence within one engine step; `stats()` is what the replica exports as gauges. Like
vLLM's `EngineClient` (generate / abort), serving code never knows how an engine schedules.

`ThreadedEngine` is the part engines share: one worker thread owns the model; each iteration drops sequences
whose client went away or whose deadline passed, then calls the engine's `_step()`. Tokens go through
`_emit_token` (stop tokens, stop strings, `max_new_tokens`, streamed text via `TextStream`) and sequences end
through `_finish`, so every engine streams, stops and reports the same way. A step that raises ends the
sequences it held (finish_reason "error"), never the thread, and never a sequence that was only waiting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from serve_app.dataplane.generation import SamplingParams
from serve_app.runtime.textstream import TextStream

log = logging.getLogger("ray.serve")


@dataclass(eq=False)
class Sequence:
    """One generation request. `sink(event)` is called from the engine thread for every event."""

    prompt_ids: list[int]
    params: SamplingParams
    sink: Callable[[dict], None]
    deadline: float | None = None  # time.monotonic() past which it ends with finish_reason "deadline"
    stream: TextStream | None = None
    generated: list[int] = field(default_factory=list)
    prefilled: int = 0  # prompt tokens already in the engine's cache
    cancelled: bool = False
    finished: str | None = None
    submitted: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    rng: np.random.Generator | None = None  # sampled decoding only
    state: object = None  # what the engine keeps per sequence (a cache, a slot)

    @property
    def position(self) -> int:
        """Position of the last token (the one fed to the next decode step)."""
        return len(self.prompt_ids) + len(self.generated) - 1


class Engine(Protocol):
    """What the summarizer deployment, the OpenAI API, SSE, OIP generate and gRPC streams all call."""

    def submit(self, seq: Sequence) -> Sequence: ...

    def cancel(self, seq: Sequence) -> None: ...

    def stats(self) -> dict: ...

    def close(self) -> None: ...


def pick_token(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator | None) -> int:
    """Greedy (temperature 0), or a sample from softmax(logits / temperature) cut to the top_p mass."""
    if params.temperature <= 0 or rng is None:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / params.temperature
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")
    sorted_probs = probs[order]
    if params.top_p < 1.0:
        # Keep the smallest set of top tokens whose mass reaches top_p (the first token always stays).
        keep = np.cumsum(sorted_probs) - sorted_probs < params.top_p
        sorted_probs = np.where(keep, sorted_probs, 0.0)
        sorted_probs /= sorted_probs.sum()
    return int(order[rng.choice(len(order), p=sorted_probs)])


class ThreadedEngine:
    """Shared loop of the engines: subclasses implement `_step()` and may override `_released(seq)`."""

    name = "engine"

    def __init__(self, decode: Callable[[list[int]], str], stop_ids: set[int], max_running: int,
                 on_change: Callable[[dict], None] | None = None):
        self.decode = decode
        self.stop_ids = set(stop_ids)
        self.max_running = max_running
        self.on_change = on_change or (lambda stats: None)
        self.waiting: deque[Sequence] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self.finished_by_reason: dict[str, int] = {}
        self.tokens_generated = 0
        self._thread: threading.Thread | None = None

    def _start(self) -> None:
        """Subclasses call this at the end of their __init__, once the model is ready."""
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-engine", daemon=True)
        self._thread.start()

    # -- called from other threads ------------------------------------------------------------------------
    def submit(self, seq: Sequence) -> Sequence:
        if not seq.prompt_ids:  # would fail the whole step it joined, ending every sequence in it
            raise ValueError("a sequence needs at least one prompt token")
        seq.stream = TextStream(self.decode, seq.params.stop, seq.params.strip)
        if seq.params.temperature > 0:
            seq.rng = np.random.default_rng(seq.params.seed)
        with self._cv:
            self.waiting.append(seq)
            self._cv.notify()
        return seq

    def cancel(self, seq: Sequence) -> None:
        """Ends the sequence at the start of the next iteration (within one engine step)."""
        seq.cancelled = True
        with self._cv:
            self._cv.notify()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def stats(self) -> dict:
        active = self.active()
        running = sum(s.finished is None and s.prefilled >= len(s.prompt_ids) for s in active)
        return {"running": running, "waiting": len(self.waiting) + len(active) - running,
                "tokens_generated": self.tokens_generated, "finished": dict(self.finished_by_reason)}

    # -- for subclasses -----------------------------------------------------------------------------------
    def active(self) -> list[Sequence]:
        """Sequences the engine has taken from `waiting` (prefilling or decoding)."""
        raise NotImplementedError

    def _step(self) -> None:
        raise NotImplementedError

    def _released(self, seq: Sequence) -> None:
        """Called once when an active sequence finishes: free what the engine kept for it."""

    def _failed(self, error: Exception) -> None:
        """A step raised: end the sequences it held (subclasses reset their batch state after this)."""
        for seq in self.active():
            self._finish(seq, "error")

    # -- the engine thread ----------------------------------------------------------------------------------
    def _has_work(self) -> bool:
        return bool(self.waiting or self.active())

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._closed and not self._has_work():
                    self._cv.wait()
                if self._closed:
                    break
            try:
                self._sweep()
                if self._has_work():
                    self._step()
            except Exception as err:  # noqa: BLE001 - a failed step ends the sequences in it, never the thread
                log.exception("%s generation step failed", self.name)
                self._failed(err)
            self.on_change(self.stats())
        for seq in [*self.active(), *list(self.waiting)]:
            self._finish(seq, "cancelled")

    def _sweep(self) -> None:
        now = time.monotonic()
        with self._cv:  # `waiting` grows from other threads
            live = [*self.active(), *self.waiting]
        for seq in live:
            if seq.cancelled:
                self._finish(seq, "cancelled")
            elif seq.deadline is not None and now > seq.deadline:
                self._finish(seq, "deadline")

    def _take_waiting(self) -> Sequence | None:
        with self._cv:
            return self.waiting.popleft() if self.waiting else None

    # -- tokens out ---------------------------------------------------------------------------------------
    def _emit_token(self, seq: Sequence, token: int) -> None:
        if seq.finished is not None:
            return
        if seq.first_token_at is None:
            seq.first_token_at = time.perf_counter()
        if token in self.stop_ids:
            self._finish(seq, "stop")
            return
        seq.generated.append(token)
        self.tokens_generated += 1
        delta = seq.stream.push([token])
        if seq.stream.stopped:
            self._finish(seq, "stop", delta)
            return
        if delta:
            seq.sink({"type": "token", "text": delta, "completion_tokens": len(seq.generated)})
        if len(seq.generated) >= seq.params.max_new_tokens:
            self._finish(seq, "length")

    def _finish(self, seq: Sequence, reason: str, delta: str = "") -> None:
        if seq.finished is not None:
            return
        seq.finished = reason
        with self._cv:
            if seq in self.waiting:
                self.waiting.remove(seq)
        self._released(seq)
        try:
            delta += seq.stream.finish() if seq.stream else ""
        except Exception:  # noqa: BLE001 - text that cannot be decoded must not keep the done event back
            log.exception("decoding the end of a sequence failed")
        if delta:
            seq.sink({"type": "token", "text": delta, "completion_tokens": len(seq.generated)})
        self.finished_by_reason[reason] = self.finished_by_reason.get(reason, 0) + 1
        now = time.perf_counter()
        first = seq.first_token_at
        seq.sink({"type": "done", "finish_reason": reason, "text": seq.stream.sent if seq.stream else "",
                  "prompt_tokens": len(seq.prompt_ids), "completion_tokens": len(seq.generated),
                  "ttft_s": None if first is None else first - seq.submitted,
                  "tpot_s": (now - first) / (len(seq.generated) - 1)
                  if first is not None and len(seq.generated) > 1 else None})
