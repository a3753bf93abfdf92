"""The raw baseline: the model's own limit, in this process with no network or serialization, at the fastest
batch layout the project knows (a measured sweep, recorded in bench.json)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from serve_app.bench.load import Call, closed_loop


class RawBatcher:
    """The model's own limit: requests coalesced (everything queued when a run slot frees, up to `max_batch`,
    as the gateway's replica batches) and run in this process, with no network and no serialization.
    `concurrent` batches run side by side on worker threads; a lone batch gets `threads` torch threads, batches
    side by side one each (torch's team size is per calling thread). `make bench` measures a few layouts and
    divides by the fastest (`RAW_LAYOUTS`, `best_raw_layout`)."""

    def __init__(self, predict: Callable[[list[str]], list[dict]], max_batch: int = 32, concurrent: int = 1,
                 threads: int | None = None):
        import torch

        from serve_app.dataplane.batching import SlotBatcher

        self.predict = predict
        self.threads = threads or torch.get_num_threads()
        self.pool = ThreadPoolExecutor(max_workers=concurrent, thread_name_prefix="raw-batch")
        self.batcher = SlotBatcher(self._run, max_batch, concurrent, name="raw")

    @property
    def layout(self) -> dict:
        return {"max_batch": self.batcher.max_batch, "concurrent": self.batcher.max_concurrent,
                "threads_alone": self.threads, "threads_side_by_side": 1}

    async def submit(self, text: str) -> dict:
        [result] = await self.batcher.submit([text])
        return result

    async def _run(self, texts: list[str]) -> list[dict]:
        threads = self.threads if self.batcher.running <= 1 else 1
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._predict_with, threads, texts)

    def _predict_with(self, threads: int, texts: list[str]) -> list[dict]:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        return self.predict(texts)

    async def close(self) -> None:
        await self.batcher.close()
        self.pool.shutdown(wait=False, cancel_futures=True)


# (max_batch, batches side by side): one wide batch at a time, and the gateway replica's layout.
RAW_LAYOUTS = [(64, 1), (16, 2), (32, 2)]


async def best_raw_layout(predict: Callable[[list[str]], list[dict]], call_of: Callable[[RawBatcher], Call],
                          concurrency: int, seconds: float, tick=lambda s: None) -> tuple[RawBatcher, dict]:
    """The raw baseline at its best: each layout of RAW_LAYOUTS in a closed loop at `concurrency`; returns the
    fastest one's batcher (open) and what every layout measured."""
    measured, best, best_rps = {}, None, -1.0
    for max_batch, concurrent in RAW_LAYOUTS:
        raw = RawBatcher(predict, max_batch, concurrent)
        tick(f"raw baseline layout: batches of {max_batch}, {concurrent} side by side")
        await call_of(raw)(0)  # warm-up
        sample = await closed_loop(call_of(raw), concurrency, seconds)
        measured[f"{max_batch}x{concurrent}"] = {**raw.layout, **sample.as_dict()}
        if sample.errors == 0 and sample.rps > best_rps:
            if best is not None:
                await best.close()
            best, best_rps = raw, sample.rps
        else:
            await raw.close()
    return best, {"chosen": best.layout if best else None, "measured": measured}
