"""The model inside Flink: an edge bundle's onnxruntime classifier (`gateway edge-bundle`), same output format.

The bundle's own run.py is loaded (it needs only onnxruntime, tokenizers and numpy), so the job classifies
exactly as the bundle does on its own. Micro-batches of `batch_size` run in a worker thread, off the event loop
that keeps taking records. The version is the bundle's registry version when it records one, else the hash of
its model.onnx.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import time
from collections.abc import Callable
from pathlib import Path

from serve_app.stream.batching import MicroBatcher, Pending, Stats
from serve_app.stream.records import output


def load_runner(bundle: Path):
    spec = importlib.util.spec_from_file_location("edge_bundle_run", bundle / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bundle_identity(bundle: Path) -> tuple[str, str]:
    """(model, version) that outputs name."""
    meta = json.loads((bundle / "labels.json").read_text())
    model = meta.get("model") or bundle.name
    version = meta.get("version")
    if not version:
        digest = hashlib.sha256((bundle / "model.onnx").read_bytes()).hexdigest()
        version = "sha256:" + digest[:12]
    return model, version


class EdgeEnricher(MicroBatcher):
    def __init__(self, bundle: Path, *, batch_size: int = 16, threads: int = 1, batch_wait_s: float = 0.002,
                 stats: Stats | None = None, on_latency: Callable[[float], None] | None = None):
        super().__init__(batch_size, batch_wait_s, stats, on_latency)
        self.bundle, self.threads = Path(bundle), threads
        self.model, self.version = bundle_identity(self.bundle)
        self.classifier = None
        self._lock = asyncio.Lock()  # one onnxruntime call at a time: its threads are the operator's cores

    async def start(self) -> None:
        self.classifier = load_runner(self.bundle).EdgeClassifier(self.bundle, threads=self.threads)

    async def close(self) -> None:
        self.classifier = None

    async def send(self, batch: list[Pending]) -> None:
        for p in batch:
            p.record.attempts += 1
        async with self._lock:
            results = await asyncio.to_thread(self.classifier.classify, [p.record.text for p in batch])
        now = time.monotonic()
        for p, result in zip(batch, results):
            latency = self.observe_latency(p, now)
            p.future.set_result(output(p.record, result, self.model, self.version, latency, "edge"))
