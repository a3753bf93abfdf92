"""Shared shell of the model deployments: load once, name the version, batch, keep the event loop free."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from deployments.metrics import metrics_for
from serve_app.dataplane.batching import EXPRESS, SlotBatcher
from serve_app.dataplane.priority import CURRENT, LOW, LOW_CLASS_NICE, NORMAL
from serve_app.errors import GatewayError, InvalidInput
from serve_app.registry import IntegrityError, Registry
from serve_app.registry.versioning import content_hash, short
from serve_app.runtime.processing import flatten, unflatten
from serve_app.runtime.step_aside import StepAside, install
from serve_app.tracing import span as traced

log = logging.getLogger("ray.serve")

# Model calls failing in a row before the replica reports itself unhealthy (Ray Serve then replaces it).
UNHEALTHY_AFTER_FAILURES = 5
# What the replica runs after a request fails alone, to tell a bad input from a broken model.
PROBE_TEXT = "The replica checks that its model still answers."


def lower_thread_priority(nice: int) -> None:
    """Make the calling thread (and the threads it starts, such as its OpenMP team) run only on CPU that others
    leave: Linux's SCHED_IDLE policy, and the niceness `nice` (where SCHED_IDLE is unavailable). Niceness alone
    is not enough under Ray: its workers already run at nice 15, so 19 would weigh only 2.4x less."""
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, nice)
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError) as err:  # not Linux, or a sandbox that forbids it: the class order remains
        log.warning("could not lower a low-class batch thread's priority: %r", err)


def start_low_thread(gate: StepAside) -> None:
    """The initializer of a replica's low-class worker threads: idle OS priority, and marked to step aside."""
    lower_thread_priority(LOW_CLASS_NICE)
    gate.mark_low()


def materialize(spec: dict) -> tuple[Path, str, str]:
    """The local folder to load, the version label, and the verified content hash."""
    if "registry" not in spec:
        path = Path(spec["path"])
        digest = content_hash(path)
        return path, f"sha256:{short(digest)}", digest
    reg = spec["registry"]
    registry = Registry(reg["uri"], reg["options"], Path(reg["cache_dir"]))
    version = registry.resolve(f"{spec.get('registry_model') or spec['name']}@{spec['iteration']}")
    if version.content_hash != spec["content_hash"]:
        raise IntegrityError(f"{version.label} now hashes to {version.content_hash}, expected {spec['content_hash']}")
    # Downloads once per content hash into the node's cache, and verifies the files on every load.
    return registry.pull(version), str(version.iteration), version.content_hash


class ModelDeployment:
    """Subclasses implement `_load(path) -> info dict`, and either `_predict(flat texts) -> results` (batched by
    a `SlotBatcher` through `_queue`) or an `@serve.batch` method named `_batched` (used through `_submit`).

    `spec` is a `ModelConfig` dumped to JSON plus either a folder `path` or a registry version
    (`registry`, `iteration`, `content_hash`); it crosses process boundaries.
    """

    def __init__(self, spec: dict):
        started = time.perf_counter()
        self.spec = spec
        self.name = spec["name"]
        self.metrics = metrics_for(spec.get("metrics", True))
        self.in_flight = 0
        self.failures_in_a_row = 0
        threads = spec["resources"].get("threads")
        if threads:
            torch.set_num_threads(int(threads))
        self.threads = torch.get_num_threads()
        path, self.version, self.content_hash = materialize(spec)
        self._details = self._load(path)
        self.labels = {"model": self.name, "version": self.version}
        self.metrics.set("gateway_model_load_seconds", self.labels, time.perf_counter() - started)
        self.metrics.set("gateway_queue_depth", self.labels, 0)
        batching = spec["batching"]
        self.micro_batch = batching["max_batch_size"]
        if hasattr(self, "_batched"):
            # One config drives @serve.batch: the decorator's arguments are only defaults.
            self._batched.set_max_batch_size(batching["max_batch_size"])
            self._batched.set_batch_wait_timeout_s(batching["batch_wait_timeout_s"])
        else:
            concurrent = batching.get("max_concurrent_batches", 1)
            # One thread per concurrent batch: torch's intra-op thread count is per calling thread, so each
            # batch can be given its own (see _run_batch).
            # (+ EXPRESS: the run high-class requests may add while every slot is busy, never queued here)
            self._pool = ThreadPoolExecutor(max_workers=concurrent + EXPRESS, thread_name_prefix=f"{self.name}-batch")
            # Low-class batches run on threads of their own at the lowest OS priority (lower_thread_priority): the
            # OpenMP team each one starts inherits it, so under overload they take only the CPU nothing else wants.
            # They also pause between the model's blocks while a batch of a higher class runs (step_aside.py).
            self.step_aside = StepAside()
            model = getattr(getattr(self, "runtime", None), "model", None)
            if isinstance(model, torch.nn.Module):
                install(model, self.step_aside)
            self._low_pool = ThreadPoolExecutor(max_workers=concurrent, thread_name_prefix=f"{self.name}-low",
                                                initializer=start_low_thread, initargs=(self.step_aside,))
            self._running_low = 0  # low-class batches running now
            self.batcher = SlotBatcher(self._run_batch, batching["max_batch_size"], concurrent,
                                       batching["batch_wait_timeout_s"], name=self.name,
                                       on_batch=lambda n, running: self.metrics.observe(
                                           "gateway_batch_size", self.labels, n),
                                       isolate=lambda err: True)  # a failed batch reruns request by request
        log.info("model %s loaded: version %s (%s)", self.name, self.version, self.content_hash)

    def _load(self, path: Path) -> dict:
        raise NotImplementedError

    def check_health(self) -> None:
        """Called by Ray Serve's controller every health_check_period_s; raising makes it replace the replica.
        A replica whose model calls keep failing (a wedged device, a broken runtime) is not worth keeping."""
        if self.failures_in_a_row >= UNHEALTHY_AFTER_FAILURES:
            raise RuntimeError(f"{self.name} v{self.version}: the last {self.failures_in_a_row} model calls failed")

    async def info(self) -> dict:
        return {"version": self.version, "content_hash": self.content_hash,
                "device": str(self.runtime.placement.device), **self._details}

    async def _submit(self, *args) -> list:
        """Queue one request's texts for the batcher, keeping the in-flight gauge current."""
        self.in_flight += 1
        self.metrics.set("gateway_queue_depth", self.labels, self.in_flight)
        try:
            return await self._batched(*args)
        finally:
            self.in_flight -= 1
            self.metrics.set("gateway_queue_depth", self.labels, self.in_flight)

    async def _queue(self, texts: list[str], priority: int | None = None) -> list:
        """One request's texts through the replica's batcher, keeping the in-flight gauge current. Its span (a
        child of the ingress's model call where Ray Serve's tracing carries the context) says which batch ran it."""
        self.in_flight += 1
        self.metrics.set("gateway_queue_depth", self.labels, self.in_flight)
        notes: dict = {}
        with traced("gateway.replica", attributes={
                "gateway.model": self.name, "gateway.version": self.version, "gateway.texts": len(texts)}) as span:
            try:
                return await self.batcher.submit(texts, priority or NORMAL, notes=notes)
            except Exception as err:
                await self._blame(err)
                raise
            finally:
                self.in_flight -= 1
                self.metrics.set("gateway_queue_depth", self.labels, self.in_flight)
                if notes:
                    span.set_attributes({"gateway.batch_size": notes["batch_items"],
                                         "gateway.queue_wait_ms": round(notes["queue_wait_s"] * 1000, 3)})

    def _predict(self, texts: list[str]) -> list:
        raise NotImplementedError

    async def _blame(self, err: Exception) -> None:
        """A request failed on its own (its batch was rerun request by request). If the model still answers a
        known-good text, the input was at fault: a 400 for its sender, and nothing counted against the
        replica's health. Otherwise the model is failing: counted (see check_health), and the error stands."""
        if isinstance(err, GatewayError):
            return
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._predict_with, 1, [PROBE_TEXT])
        except Exception:  # noqa: BLE001 - the model itself is failing
            self.failures_in_a_row += 1
            return
        self.failures_in_a_row = 0
        log.warning("model %s could not process one request's input: %r", self.name, err)
        raise InvalidInput(f"model '{self.name}' could not process this input (the model answers others); "
                           "check the texts' encoding and content") from None

    async def _run_batch(self, flat: list[str]) -> list:
        """Run one batch on a worker thread. A batch running alone gets every intra-op thread (lowest latency
        at low load); batches running side by side get one each, so under load the replica keeps all its cores
        busy without the OpenMP barrier stalls of one wide team sharing cores with other processes. Low-class
        batches run at idle OS priority (`_low_pool`) and do not count against a batch of a higher class: beside
        them it still gets every thread, and the cores."""
        low = CURRENT.get() == LOW  # the batch's class (SlotBatcher._run)
        beside = self.batcher.running - 1 - (0 if low else self._running_low)
        threads = self.threads if beside <= 0 else 1
        loop = asyncio.get_running_loop()
        self._running_low += low
        try:
            # Failures are counted by `_blame`, once a failed request has been tried alone and the model probed.
            outputs = await loop.run_in_executor(self._low_pool if low else self._pool, self._predict_with,
                                                 threads, flat, low)
        finally:
            self._running_low -= low
        self.failures_in_a_row = 0
        return outputs

    def _predict_with(self, threads: int, flat: list[str], low: bool = False) -> list:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)  # this worker thread's own OpenMP team size
        if low:
            return self._predict(flat)
        with self.step_aside.higher():  # low-class batches running beside it pause meanwhile
            return self._predict(flat)

    async def _run_flat(self, requests: list[list[str]], fn: Callable[[list[str]], list]) -> list[list]:
        """Run one model call over every batched request's texts, off the event loop, and split the results."""
        flat, sizes = flatten(requests)
        self.metrics.observe("gateway_batch_size", self.labels, len(flat))
        try:
            outputs = await asyncio.to_thread(fn, flat)
        except Exception:
            self.failures_in_a_row += 1
            raise
        self.failures_in_a_row = 0
        return unflatten(outputs, sizes)
