"""The llama.cpp engine: a GGUF file decoded by llama.cpp (llama-cpp-python's C API), several sequences at once.

One llama.cpp context holds `max_running` sequences, each in a KV-cache stream of its own (`seq_id` = its slot),
the way llama.cpp's own server runs parallel slots. Each engine iteration is one `llama_decode` over one batch:
  - one token for every sequence that is decoding (the token it generated last), and
  - prompt tokens of the sequences still prefilling, oldest first, up to `prefill_chunk` of them while others
    decode (so running streams move on every step), or as many as the batch holds when nothing decodes.
Logits are read only where a token comes next (decoding rows, and the last prompt token of a prefill).

Prompt reuse: a slot keeps the tokens its cache holds after its sequence ends; a new sequence starts from the cache
of the free slot that shares the longest prefix with its prompt (the chat template and system prompt, at least)
and prefills only the rest, as llama.cpp's server does with `cache_prompt` (its default, as prefix caching is
vLLM's). The last prompt token is always run again, since its logits are what the first generated token comes
from. On by default (`generation.prompt_cache`), and it does not change answers: llama.cpp's
CPU flash attention runs a sequence's queries in a ubatch through a tiled kernel when there are at least 64 of them
(GGML_FA_TILE_Q) and a row-by-row one below that, which round differently. Measured on the real SmolLM2 Q4_0: a
prompt prefilled whole, after a 96-token cached prefix, or beside other sequences' decode rows gave bitwise the same
logits; a 38-token tail (chunks of 256) or a 40-token cached prefix moved a logit by 0.8 and greedy text diverged.
So with flash attention on, every prompt piece is at least `FA_TILE` tokens (or the whole prompt), one piece per
step, and a cache is reused only as far as it leaves `FA_TILE` tokens to prefill, from prompt tokens that were
themselves prefilled so. Below a `prefill_chunk` of 2 × FA_TILE the engine turns flash attention off, where every
layout measured gave bitwise-equal logits (and ~20% less throughput at 8 sequences).
Running sequences are kept in consecutive slots (see `_compact`).

Why the C API and not `llama_cpp.Llama`: that class decodes one sequence at a time; its server serves parallel
requests one after another. The batch API with one sequence id per request is what llama.cpp's own server and
`batched` example use for concurrency.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from serve_app.runtime.engines.base import Sequence, ThreadedEngine, pick_token


def llama_cpp_module():
    """Import llama-cpp-python, with its native logging silenced once (it writes every load to stderr)."""
    import llama_cpp

    if not getattr(llama_cpp, "_gateway_quiet", False):
        llama_cpp.llama_backend_init()

        @llama_cpp.llama_log_callback
        def _quiet(level, text, user_data):  # noqa: ARG001 - llama.cpp's callback signature
            return None

        llama_cpp.llama_log_set(_quiet, ctypes.c_void_p(0))
        llama_cpp._gateway_quiet = _quiet  # keep the callback alive as long as the library
    return llama_cpp


class GgufModel:
    """A loaded GGUF model (weights, shared by contexts): `n_ctx_train`, `n_vocab`."""

    def __init__(self, path: Path):
        lib = llama_cpp_module()
        params = lib.llama_model_default_params()
        params.n_gpu_layers = 0  # this build decodes on the CPU; GPU replicas use vLLM
        self.lib = lib
        self.model = lib.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            raise ValueError(f"llama.cpp could not load {path}")
        self.vocab = lib.llama_model_get_vocab(self.model)
        self.n_vocab = lib.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = lib.llama_model_n_ctx_train(self.model)

    def close(self) -> None:
        if self.model:
            self.lib.llama_model_free(self.model)
            self.model = None


FA_TILE = 64  # ggml-cpu's GGML_FA_TILE_Q: fewer queries of a sequence in a ubatch take another kernel


@dataclass
class Slot:
    seq_id: int
    cached: list[int] = field(default_factory=list)  # the tokens this slot's cache holds, in order
    reusable: int = 0  # how many of them a new prompt may start from (prompt tokens prefilled in whole pieces)
    seq: Sequence | None = None


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class LlamaCppEngine(ThreadedEngine):
    name = "llama.cpp"

    def __init__(self, model: GgufModel, decode, stop_ids: set[int], max_running: int = 8,
                 prefill_chunk: int = 256, context_per_sequence: int = 2048, threads: int = 2,
                 batch_tokens: int = 512, reuse_prompts: bool = True, on_change=None):
        super().__init__(decode, stop_ids, max_running, on_change)
        self.reuse_prompts = reuse_prompts
        lib = self.lib = model.lib
        self.model = model
        self.prefill_chunk = prefill_chunk
        self.context_per_sequence = context_per_sequence
        # Room for every decoding row plus a full prefill chunk in one batch.
        self.batch_tokens = max(batch_tokens, prefill_chunk) + max_running
        params = lib.llama_context_default_params()
        params.n_ctx = context_per_sequence * max_running
        params.n_batch = params.n_ubatch = self.batch_tokens
        params.n_seq_max = max_running
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = False  # a stream per sequence: attention reads its own tokens, not everyone's
        # Flash attention where prompt pieces can be kept to whole tiles (module docstring), else off.
        self.flash_attention = prefill_chunk >= 2 * FA_TILE
        params.flash_attn_type = (lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if self.flash_attention
                                  else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        params.no_perf = True
        self.ctx = lib.llama_init_from_model(model.model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a context (out of memory for the KV cache?)")
        self.memory = lib.llama_get_memory(self.ctx)
        self.batch = lib.llama_batch_init(self.batch_tokens, 0, 1)
        self.slots = [Slot(i) for i in range(max_running)]
        self.prompt_tokens_reused = 0  # prompt tokens a new sequence found in its slot's cache
        self._start()

    def close(self) -> None:
        super().close()
        if self.ctx:
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_free(self.ctx)
            self.ctx = None

    def active(self) -> list[Sequence]:
        return [s.seq for s in self.slots if s.seq is not None]

    def stats(self) -> dict:
        out = super().stats()
        used = sum(len(s.cached) for s in self.slots if s.seq is not None)
        out["kv_cache_usage"] = used / (self.context_per_sequence * self.max_running)
        out["prompt_tokens_reused"] = self.prompt_tokens_reused
        return out

    def _released(self, seq: Sequence) -> None:
        slot: Slot | None = seq.state
        if slot is not None and slot.seq is seq:
            slot.seq = None  # its cache stays, for the next prompt that shares a prefix with it

    def _failed(self, error: Exception) -> None:
        super()._failed(error)
        self.lib.llama_memory_clear(self.memory, True)
        for slot in self.slots:
            slot.cached, slot.seq = [], None

    # -- one iteration --------------------------------------------------------------------------------------
    def _compact(self) -> None:
        """Keep the running sequences in slots 0..n-1. With a KV stream per sequence, llama.cpp splits a batch into
        one ubatch per run of consecutive sequence ids (`split_equal`, sequential), and each ubatch is a pass over
        the weights: measured here, a decode step of 4 sequences in slots 0, 2, 4, 6 took 51 ms, of 8 in slots
        0-7 31 ms. A sequence in the last used slot moves into a hole (a stream copy, ~47 MB for 2048 positions);
        the slot it leaves keeps its cache for prompt reuse."""
        while True:
            used = [s for s in self.slots if s.seq is not None]
            holes = [s for s in self.slots[: len(used)] if s.seq is None]
            if not holes:
                return
            hole, last = holes[0], used[-1]
            self.lib.llama_memory_seq_cp(self.memory, last.seq_id, hole.seq_id, -1, -1)
            hole.seq, hole.cached, hole.reusable, last.seq = last.seq, list(last.cached), last.reusable, None
            hole.seq.state = hole

    def _admit(self) -> None:
        """Waiting sequences take the next slot; the cache of whichever free slot shares the most of a prompt is
        copied there first (the chat template and system prompt, at least), and only the rest is prefilled."""
        while self.waiting:
            n = sum(s.seq is not None for s in self.slots)
            if n == len(self.slots):
                return
            seq = self._take_waiting()
            if seq is None:
                return
            if len(seq.prompt_ids) + seq.params.max_new_tokens > self.context_per_sequence:
                seq.prefilled = len(seq.prompt_ids)  # never prefilled: finished before it takes a slot
                self._finish(seq, "error")
                continue
            slot = self.slots[n]
            if not self.reuse_prompts:
                slot.cached, slot.reusable = [], 0  # seq_rm below clears the slot's stream from position 0
            free = self.slots[n:] if self.reuse_prompts else [slot]
            best = max(free, key=lambda s: self._shared(s, seq.prompt_ids))
            if self._shared(best, seq.prompt_ids) > self._shared(slot, seq.prompt_ids):
                self.lib.llama_memory_seq_cp(self.memory, best.seq_id, slot.seq_id, -1, -1)
                slot.cached, slot.reusable = list(best.cached), best.reusable
            keep = self._shared(slot, seq.prompt_ids)
            self.lib.llama_memory_seq_rm(self.memory, slot.seq_id, keep, -1)
            slot.cached = slot.cached[:keep]
            # Prompt tokens prefilled in whole pieces (flash attention) may start a later prompt; a short prompt's
            # were read row by row, which a longer prompt's fresh prefill would not do.
            slot.reusable = len(seq.prompt_ids) if not self.flash_attention or len(seq.prompt_ids) >= FA_TILE else 0
            slot.seq, seq.state, seq.prefilled = seq, slot, keep
            self.prompt_tokens_reused += keep

    def _shared(self, slot: Slot, prompt: list[int]) -> int:
        """Tokens of `prompt` a slot's cache can give: its reusable prefix, leaving at least the last prompt token
        (its logits pick the first generated one), or a whole tile with flash attention, to prefill."""
        shared = common_prefix(slot.cached[: slot.reusable], prompt)
        return max(0, min(shared, len(prompt) - (FA_TILE if self.flash_attention else 1)))

    def _plan(self) -> dict[int, list[int]]:
        """Tokens each slot feeds this step: its last token if it decodes; prompt tokens, oldest prompts first, up
        to `prefill_chunk` while others decode (as many as the batch holds when none does)."""
        active = [s for s in self.slots if s.seq is not None]
        feed = {s.seq_id: [s.seq.generated[-1]] for s in active
                if s.seq.generated and s.seq.prefilled >= len(s.seq.prompt_ids)}
        room = self.batch_tokens - len(feed)
        budget = min(room, self.prefill_chunk) if feed else room
        for slot in sorted((s for s in active if s.seq.prefilled < len(s.seq.prompt_ids)),
                           key=lambda s: s.seq.submitted):
            if budget <= 0:
                break
            left = len(slot.seq.prompt_ids) - slot.seq.prefilled
            size = min(left, budget)
            if self.flash_attention:
                if size < left and left - size < FA_TILE:
                    size = left - FA_TILE  # leave a whole tile for the next piece
                if size < min(left, FA_TILE):
                    break  # a piece this small would take flash attention's other kernel: next step
            take = slot.seq.prompt_ids[slot.seq.prefilled: slot.seq.prefilled + size]
            feed[slot.seq_id] = take
            budget -= len(take)
            if self.flash_attention:
                break  # one piece per step: llama.cpp splits several prompts' tokens into ubatches of equal counts
        return feed

    def _step(self) -> None:
        self._compact()
        self._admit()
        feed = self._plan()
        rows: list[tuple[int, Sequence]] = []  # (batch index, sequence) where logits are read
        n = 0
        for seq_id in sorted(feed):  # in slot order: consecutive ids share one ubatch
            slot, tokens = self.slots[seq_id], feed[seq_id]
            seq = slot.seq
            decoding = seq.prefilled >= len(seq.prompt_ids)
            start = seq.position if decoding else seq.prefilled
            for i, token in enumerate(tokens):
                last = decoding or start + i == len(seq.prompt_ids) - 1
                self._put(n, token, start + i, seq_id, last)
                if last:
                    rows.append((n, seq))
                n += 1
            slot.cached.extend(tokens)
            if not decoding:
                seq.prefilled += len(tokens)
        if n == 0:
            return
        self.batch.n_tokens = n
        code = self.lib.llama_decode(self.ctx, self.batch)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code}")
        for index, seq in rows:
            logits = np.ctypeslib.as_array(self.lib.llama_get_logits_ith(self.ctx, index), shape=(self.model.n_vocab,))
            self._emit_token(seq, pick_token(logits, seq.params, seq.rng))

    def _put(self, i: int, token: int, pos: int, seq_id: int, logits: bool) -> None:
        b = self.batch
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq_id
        b.logits[i] = logits
