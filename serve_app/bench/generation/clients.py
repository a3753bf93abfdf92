"""The two clients of a generation run, each `one(text) -> (generated tokens, seconds to the first token)`:
the in-process engine and a streamed /v1/summarize; and the closed loop that drives either (a Run)."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from serve_app.bench import load


@dataclass
class Run:
    tokens: int
    seconds: float
    ttft_s: dict[int, float]  # request number -> seconds to its first token
    concurrency: int

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def p50_ttft_s(self) -> float:
        """Over the requests after the first wave: a closed loop starts all its clients at once, so the first
        `concurrency` requests queue for prefill together, which no steady load does (their figure is kept
        in the JSON as `c8_ttft_first_wave`)."""
        steady = [t for i, t in self.ttft_s.items() if i >= self.concurrency] or list(self.ttft_s.values())
        return statistics.median(steady)

    @property
    def first_wave(self) -> list[float]:
        return [round(t, 3) for i, t in sorted(self.ttft_s.items()) if i < self.concurrency]


async def closed_loop(one, texts: list[str], concurrency: int, n: int) -> Run:
    """`concurrency` clients take the next of `n` requests as soon as their previous one is answered (the bench's
    one load generator, bench/load.py); any failed request fails the run."""
    sample = await load.closed_loop(lambda i: one(texts[i % len(texts)]), concurrency, max_requests=n,
                                    timeout_s=600.0)
    if sample.errors:
        raise RuntimeError(f"{sample.errors} of {n} generation requests failed; the first: {sample.first_error}")
    tokens = sum(got for _, (got, _) in sample.answers.values())
    return Run(tokens, sample.seconds, {i: ttft for i, (_, (_, ttft)) in sample.answers.items()}, concurrency)


def engine_call(runtime, engine, max_new_tokens: int):
    """One summary through the in-process engine: (generated tokens, seconds to first token)."""
    from serve_app.dataplane.generation import SamplingParams
    from serve_app.runtime.engines import Sequence

    async def one(text: str) -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        done, first = loop.create_future(), loop.create_future()
        started = time.perf_counter()

        def sink(event):
            if event["type"] == "token" and not first.done():
                loop.call_soon_threadsafe(lambda: first.done() or first.set_result(time.perf_counter()))
            if event["type"] == "done":
                loop.call_soon_threadsafe(done.set_result, event)

        ids = runtime.summary_prompt(text)[0]
        engine.submit(Sequence(ids, SamplingParams(max_new_tokens), sink))
        event = await done
        at = first.result() if first.done() else time.perf_counter()
        return event["completion_tokens"], at - started

    return one


def gateway_call(http, model: str, max_new_tokens: int):
    """One streamed /v1/summarize: (generated tokens, seconds to the first token event)."""
    async def one(text: str) -> tuple[int, float]:
        started, ttft, done = time.perf_counter(), None, None
        body = {"texts": [text], "model": model, "max_new_tokens": max_new_tokens, "stream": True}
        # A closed loop of 8 queues each request behind the others' prefill: the server's 60 s default deadline
        # is not what is measured here, so ask for its maximum.
        async with http.stream("POST", "/v1/summarize", json=body, headers={"X-Request-Timeout": "300"}) as r:
            if r.status_code != 200:
                raise RuntimeError(f"{r.status_code}: {(await r.aread())[:200]!r}")
            event = ""
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                    if event == "token" and ttft is None:
                        ttft = time.perf_counter() - started
                elif line.startswith("data: ") and event in ("done", "error"):
                    done = json.loads(line[6:])
        if event != "done" or done is None:
            raise RuntimeError(f"stream ended with {event}: {done}")
        return done["generated_tokens"], ttft if ttft is not None else time.perf_counter() - started

    return one


def llama_standalone_call(gguf: Path, threads: int, max_new_tokens: int, context: int = 2048):
    """One summary on llama.cpp itself, through llama-cpp-python's stock `Llama.generate` (one sequence at a time,
    greedy, its own prompt-prefix reuse): the same prompt ids, threads and token limit as the gateway's engine.
    Runs in a worker thread, so the caller's event loop stays free."""
    import llama_cpp

    llm = llama_cpp.Llama(str(gguf), n_ctx=context, n_batch=512, n_threads=threads, n_threads_batch=threads,
                          verbose=False)
    eos = llm.token_eos()

    def generate(ids: list[int]) -> tuple[int, float]:
        started, first, n = time.perf_counter(), None, 0
        for token in llm.generate(ids, temp=0.0, reset=True):
            if first is None:
                first = time.perf_counter() - started
            if token == eos:
                break
            n += 1
            if n >= max_new_tokens:
                break
        return n, first if first is not None else time.perf_counter() - started

    def make(runtime):
        async def one(text: str) -> tuple[int, float]:
            return await asyncio.to_thread(generate, runtime.summary_prompt(text)[0])
        return one

    return make


class VllmPeer:
    """vLLM standalone (serve_app/bench/generation/vllm_peer.py), a child process that runs a whole closed loop per
    call; `None` from `start` where vLLM is not installed."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    @classmethod
    def start(cls, folder: Path, threads: int, max_running: int, stop: set[int],
              dtype: str = "float32") -> VllmPeer | None:
        from serve_app.runtime.engines import vllm_installed

        if not vllm_installed():
            return None
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "serve_app.bench.generation.vllm_peer", str(folder),
                                 "--threads", str(threads), "--max-running", str(max_running), "--dtype", dtype,
                                 "--stop", *map(str, sorted(stop))],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sys.stderr.fileno()
                                if os.environ.get("BENCH_VLLM_LOG") else subprocess.DEVNULL, text=True, env=env)
        peer = cls(proc)
        if not peer._read().get("ready"):
            peer.close()
            raise RuntimeError("vLLM peer did not start")
        return peer

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"vLLM peer exited ({self.proc.poll()}); BENCH_VLLM_LOG=1 shows its log")
        return json.loads(line)

    async def run(self, prompts: list[list[int]], concurrency: int, max_new_tokens: int) -> Run:
        def call() -> dict:
            self.proc.stdin.write(json.dumps({"prompts": prompts, "concurrency": concurrency,
                                              "max_new_tokens": max_new_tokens}) + "\n")
            self.proc.stdin.flush()
            return self._read()

        out = await asyncio.to_thread(call)
        return Run(out["tokens"], out["seconds"], {int(k): v for k, v in out["ttft_s"].items()}, concurrency)

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except Exception:  # noqa: BLE001 - a peer that will not stop is killed
            self.proc.kill()
