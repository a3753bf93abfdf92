"""Ray Serve deployment of the summarizer: a generation engine (serve_app/runtime/engines: llama.cpp for a GGUF
file, torch for a Hugging Face folder) for decoder-only models, static batches for seq2seq ones.

`infer` answers whole summaries (the JSON API, OIP infer, pipelines); `generate` is a streaming method, called
through `handle.options(stream=True)`, whose events are documented in `serve_app.dataplane.generation`. Both feed the
same engine, so a request joins the running batch at the next engine step whichever way it came.
A seq2seq checkpoint keeps `@serve.batch` over `generate()`, and streams its answer as one chunk.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from pathlib import Path

from ray import serve

from deployments.base import ModelDeployment
from serve_app.dataplane.generation import BadPrompt, PromptTooLong, sampling_params
from serve_app.runtime.engines import Sequence
from serve_app.tasks import contract


@serve.deployment
class SummarizerDeployment(ModelDeployment):
    def _load(self, path: Path) -> dict:
        gen = self.spec.get("generation") or {}
        self.runtime = contract(self.spec["task"]).load_runtime(path, self.spec)
        self.engine = None
        self._gauges: dict[str, int] = {}
        if not self.runtime.seq2seq:
            self.engine = self.runtime.start_engine(gen.get("max_running", 8), gen.get("prefill_chunk"),
                                                    self._engine_changed, gen.get("prompt_cache", True))
        return {"max_length": self.runtime.max_length, "continuous_batching": self.engine is not None,
                "engine": self.engine.name if self.engine is not None else "torch (static batches)"}

    async def info(self) -> dict:
        out = await super().info()
        if self.engine is not None:
            out["engine"] = self.engine.stats()
        return out

    async def infer(self, texts: list[str], params: dict, priority: int | None = None) -> dict:
        # (`priority`: the request's class; this replica does not queue by class)
        n = int(params["max_new_tokens"])
        if self.engine is None:
            results = await self._submit(texts, n)
        else:
            results = await asyncio.gather(*(self._summary(t, n) for t in texts))
        return {"version": self.version, "max_length": self.runtime.max_length, "max_new_tokens": n,
                "results": list(results)}

    async def _summary(self, text: str, n: int) -> dict:
        ids, truncated, n_in = self.runtime.summary_prompt(text)
        done = {}
        async for event in self._events(ids, sampling_params({"max_new_tokens": n})):
            done = event
        return {"summary": done["text"], "truncated": truncated, "input_tokens": n_in,
                "generated_tokens": done["completion_tokens"], "finish_reason": done["finish_reason"]}

    async def generate(self, request: dict):
        """Stream one generation: a `start` event (or an `error` event), `token` events, a `done` event."""
        try:
            ids, truncated, n_in = self._prompt(request)
        except BadPrompt as err:
            yield {"type": "error", "kind": "invalid_input", "message": str(err)}
            return
        params = sampling_params(request["params"])
        if self.engine is None and request["kind"] != "summary":
            yield {"type": "error", "kind": "invalid_input",
                   "message": f"model '{self.name}' is a seq2seq summarizer: it takes articles, not chats or prompts"}
            return
        yield {"type": "start", "version": self.version, "prompt_tokens": len(ids), "input_tokens": n_in,
               "truncated": truncated}
        if self.engine is None:  # seq2seq: one static call, streamed as one chunk
            [result] = await self._submit([request["text"]], params.max_new_tokens)
            yield {"type": "token", "text": result["summary"], "completion_tokens": result["generated_tokens"]}
            yield {"type": "done", "text": result["summary"], "finish_reason": result["finish_reason"],
                   "prompt_tokens": len(ids), "completion_tokens": result["generated_tokens"]}
            return
        async for event in self._events(ids, params, request.get("deadline_s")):
            yield event

    def _prompt(self, request: dict) -> tuple[list[int], bool, int]:
        kind = request["kind"]
        if kind == "summary":
            return self.runtime.summary_prompt(request["text"])
        ids = (self.runtime.chat_prompt(request["messages"]) if kind == "chat"
               else self.runtime.completion_prompt(request["prompt"]))
        if not ids:  # nothing to continue from: refused here, so it never enters (and fails) a running batch
            raise BadPrompt("the prompt is empty: it encodes to no tokens")
        room = self.runtime.model_limit - int(request["params"]["max_new_tokens"])
        if len(ids) > room:
            raise PromptTooLong(f"the prompt has {len(ids)} tokens; with max_tokens "
                                f"{request['params']['max_new_tokens']} this model takes at most {room}")
        return ids, False, len(ids)

    async def _events(self, ids: list[int], params, deadline_s: float | None = None):
        """The engine's events for one sequence, on this event loop. Tokens that piled up while the consumer was
        busy go out as one chunk (fewer messages through Ray). Leaving early (the caller was cancelled, or the
        client went away) cancels the sequence, which frees its slot within one decode step."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict] = asyncio.Queue()
        deadline = time.monotonic() + deadline_s if deadline_s else None
        seq = Sequence(ids, params, lambda e: loop.call_soon_threadsafe(queue.put_nowait, e), deadline=deadline)
        self.engine.submit(seq)
        pending: deque[dict] = deque()
        try:
            while True:
                if not pending:
                    pending.append(await queue.get())
                while not queue.empty():
                    pending.append(queue.get_nowait())
                event = pending.popleft()
                while event["type"] == "token" and pending and pending[0]["type"] == "token":
                    nxt = pending.popleft()
                    event = {**nxt, "text": event["text"] + nxt["text"]}
                if event["type"] == "done":
                    self._record(event)
                yield event
                if event["type"] == "done":
                    return
        finally:
            if seq.finished is None:
                self.engine.cancel(seq)

    def _record(self, done: dict) -> None:
        self.metrics.inc("gateway_generation_finished", {**self.labels, "reason": done["finish_reason"]})
        if done["completion_tokens"]:
            self.metrics.inc("gateway_generation_tokens", self.labels, done["completion_tokens"])
        if done.get("ttft_s") is not None:
            self.metrics.observe("gateway_generation_ttft_seconds", self.labels, done["ttft_s"])
        if done.get("tpot_s") is not None:
            self.metrics.observe("gateway_generation_tpot_seconds", self.labels, done["tpot_s"])

    def _engine_changed(self, stats: dict) -> None:
        """Called by the engine thread after every iteration; gauges are set only when they change."""
        labels = getattr(self, "labels", None)
        if labels is None:  # still loading
            return
        for key in ("running", "waiting", "kv_cache_usage"):
            value = stats.get(key)
            if value is not None and self._gauges.get(key) != value:
                self._gauges[key] = value
                self.metrics.set(f"gateway_generation_{key}", labels, value)

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.02)
    async def _batched(self, requests: list[list[str]], limits: list[int]) -> list[list[dict]]:
        per_text = [n for texts, n in zip(requests, limits) for _ in texts]
        return await self._run_flat(
            requests, lambda flat: self.runtime.summarize(flat, per_text, self.micro_batch))
