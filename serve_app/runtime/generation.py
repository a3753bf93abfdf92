"""Iteration-level (continuous) batching for decoder-only LMs, over per-sequence KV caches.

One worker thread owns the model. Each iteration it
  1. drops sequences whose client went away (or whose deadline passed),
  2. runs one decode step for every running sequence together (one forward of batch B, one token each),
  3. runs one prefill chunk (`prefill_chunk` prompt tokens) of the oldest waiting sequence, alone (the whole
     prompt in one forward when no stream is running: nothing to keep moving, and one wide forward is faster).
A sequence joins the decode batch the step after its prefill ends and leaves it the step it finishes (stop
token, stop string, its own `max_new_tokens`), so no request waits for another's longest sequence, and a long
prompt never freezes running streams for more than one chunk.

Why not `transformers`' ContinuousBatchingManager: measured here (SmolLM2-135M, 2 CPU cores, 8 prompts of ~290
tokens, 32 new tokens each, warm) it took 18.7 s against 7.4 s for one static `generate` batch; its paged
attention is built for GPUs.

Where the time goes on 2 CPU cores (SmolLM2-135M fp32, ~290-token prompts; see serve_app/runtime/skinny.py):
a decode step is a pass over 540 MB of weights, ~85 ms at batch 1. With `F.linear`, MKL's sgemm made each extra
row cost almost another pass (~215 ms at batch 6); the engine's linears take `(W @ x.T).T` for a few rows
(~125 ms at batch 6). Prefill is compute-bound (~5-8 ms per prompt token, 1.6-2.3 s per prompt) and cannot be
batched into fewer FLOPs, so at concurrency 8 most of the wall time is prefill, which bounds how far batching
can lift tokens/s over one request at a time.

The batch's KV cache is a `SlotKVCache` (serve_app/runtime/kvcache.py): preallocated per-row tensors, written in
place each step (no `torch.cat` of the whole cache per token). Rows are right-aligned and left-padded, the
attention mask hides the padding and `position_ids` are per row, so each row computes what it would alone
(greedy output equals the request run alone; tests check it). A prefill runs in its own `DynamicCache` and is
copied into a free row when it ends.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from serve_app.dataplane.generation import SamplingParams
from serve_app.runtime.kvcache import SlotKVCache
from serve_app.runtime.skinny import use_skinny_linears
from serve_app.runtime.textstream import TextStream

log = logging.getLogger("ray.serve")


@dataclass
class Sequence:
    """One generation request. `sink(event)` is called from the engine thread for every event."""

    prompt_ids: list[int]
    params: SamplingParams
    sink: Callable[[dict], None]
    deadline: float | None = None  # time.monotonic() past which it ends with finish_reason "deadline"
    stream: TextStream | None = None
    generated: list[int] = field(default_factory=list)
    prefilled: int = 0
    cache: object = None  # its own DynamicCache while prefilling
    cancelled: bool = False
    finished: str | None = None
    submitted: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    generator: torch.Generator | None = None

    @property
    def position(self) -> int:
        """Position id of the last token (the one fed to the next decode step)."""
        return len(self.prompt_ids) + len(self.generated) - 1


class GenerationEngine:
    def __init__(self, model, decode: Callable[[list[int]], str], stop_ids: set[int], max_running: int = 8,
                 prefill_chunk: int = 64, device: torch.device | str = "cpu",
                 on_change: Callable[[dict], None] | None = None):
        self.model = use_skinny_linears(model) if torch.device(device).type == "cpu" else model
        self.decode = decode
        self.stop_ids = set(stop_ids)
        self.max_running = max_running
        self.prefill_chunk = prefill_chunk
        self.device = torch.device(device)
        self.on_change = on_change or (lambda stats: None)
        self.waiting: deque[Sequence] = deque()
        self.prefilling: Sequence | None = None
        self.batch: list[Sequence] = []
        self._cache: SlotKVCache | None = None  # rows in `self.batch` order, allocated at the first join
        self._cv = threading.Condition()
        self._closed = False
        self.finished_by_reason: dict[str, int] = {}
        self.tokens_generated = 0
        self._thread = threading.Thread(target=self._run, name="generation-engine", daemon=True)
        self._thread.start()

    # -- called from other threads ------------------------------------------------------------------------
    def submit(self, seq: Sequence) -> Sequence:
        seq.stream = TextStream(self.decode, seq.params.stop, seq.params.strip)
        if seq.params.temperature > 0:
            seq.generator = torch.Generator().manual_seed(
                seq.params.seed if seq.params.seed is not None else random.getrandbits(63))
        with self._cv:
            self.waiting.append(seq)
            self._cv.notify()
        return seq

    def cancel(self, seq: Sequence) -> None:
        """Ends the sequence at the start of the next iteration (within one decode step)."""
        seq.cancelled = True
        with self._cv:
            self._cv.notify()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=30)

    def stats(self) -> dict:
        # Finished rows leave the batch at the next step; they no longer count.
        running = sum(s.finished is None for s in self.batch)
        return {"running": running, "waiting": len(self.waiting) + (self.prefilling is not None),
                "tokens_generated": self.tokens_generated, "finished": dict(self.finished_by_reason)}

    # -- the engine thread ----------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._closed and not (self.waiting or self.batch or self.prefilling):
                    self._cv.wait()
                if self._closed:
                    break
                if self.prefilling is None and self.waiting and len(self.batch) < self.max_running:
                    self.prefilling = self.waiting.popleft()
            try:
                self._iteration()
            except Exception:  # noqa: BLE001 - a failed forward ends the sequences in it, never the thread
                log.exception("generation step failed")
                for seq in [*self.batch, *([self.prefilling] if self.prefilling else [])]:
                    self._finish(seq, "error")
                self.batch, self._cache, self.prefilling = [], None, None
            self.on_change(self.stats())
        for seq in [*self.batch, *list(self.waiting), *([self.prefilling] if self.prefilling else [])]:
            self._finish(seq, "cancelled")

    @torch.inference_mode()
    def _iteration(self) -> None:
        now = time.monotonic()
        with self._cv:  # `waiting` grows from other threads
            live = [*self.batch, *self.waiting, *([self.prefilling] if self.prefilling else [])]
        for seq in live:
            if seq.cancelled:
                self._finish(seq, "cancelled")
            elif seq.deadline is not None and now > seq.deadline:
                self._finish(seq, "deadline")
        self._drop_finished()
        if self.batch:
            self._decode_step()
            self._drop_finished()
        if self.prefilling is not None:
            self._prefill_chunk(self.prefilling)

    def _prefill_chunk(self, seq: Sequence) -> None:
        from transformers import DynamicCache

        if seq.cache is None:
            seq.cache = DynamicCache()
        # Chunks exist so that running streams are not frozen; with none running, one forward over the whole
        # prompt is faster (measured: 8.0 ms/token for a 270-token prompt in one go, 11.5 in 64-token chunks).
        size = self.prefill_chunk if self.batch else len(seq.prompt_ids)
        chunk = seq.prompt_ids[seq.prefilled: seq.prefilled + size]
        ids = torch.tensor([chunk], device=self.device)
        out = self.model(input_ids=ids, cache=seq.cache, use_cache=True, logits_to_keep=1)
        seq.prefilled += len(chunk)
        if seq.prefilled < len(seq.prompt_ids):
            return
        self.prefilling = None
        self._emit_token(seq, self._pick(seq, out.logits[0, -1]))
        if seq.finished is None:
            self._join(seq)
        seq.cache = None  # its rows now live in the batch cache

    def _decode_step(self) -> None:
        ids = torch.tensor([[s.generated[-1]] for s in self.batch], device=self.device)
        positions = torch.tensor([[s.position] for s in self.batch], device=self.device)
        mask = self._cache.step_mask()
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=self._cache,
                         use_cache=True)
        self._cache.advance()
        logits = out.logits[:, -1]
        greedy = logits.argmax(dim=-1).tolist()  # one call for the batch, not one per row
        for row, seq in enumerate(list(self.batch)):
            token = greedy[row] if seq.params.temperature <= 0 else self._pick(seq, logits[row])
            self._emit_token(seq, token)

    # -- batch cache bookkeeping --------------------------------------------------------------------------
    def _join(self, seq: Sequence) -> None:
        """Copy the sequence's prefilled cache into a new row of the batch cache."""
        layers = seq.cache.layers
        if self._cache is None:
            _, kv_heads, _, head_dim = layers[0].keys.shape
            self._cache = SlotKVCache(len(layers), kv_heads, head_dim, self.max_running, layers[0].keys.dtype,
                                      self.device)
        self._cache.add([layer.keys for layer in layers], [layer.values for layer in layers])
        self.batch.append(seq)

    def _drop_finished(self) -> None:
        # From the end: the cache moves its last row into a freed slot, and the batch list does the same.
        for row in reversed(range(len(self.batch))):
            if self.batch[row].finished is not None:
                self._cache.remove(row)
                self.batch[row] = self.batch[-1]
                self.batch.pop()

    # -- tokens out ---------------------------------------------------------------------------------------
    def _pick(self, seq: Sequence, logits: torch.Tensor) -> int:
        p = seq.params
        if p.temperature <= 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits.float() / p.temperature, dim=-1)
        if p.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            # Keep the smallest set of top tokens whose mass reaches top_p (the first token always stays).
            drop = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= p.top_p
            sorted_probs[drop] = 0.0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
        return int(torch.multinomial(probs, 1, generator=seq.generator))

    def _emit_token(self, seq: Sequence, token: int) -> None:
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
        if seq is self.prefilling:
            self.prefilling = None
        delta += seq.stream.finish() if seq.stream else ""
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

