"""Several registry versions of one model in each replica, through Ray Serve's model multiplexing.

Ray Serve gives the mechanism: `@serve.multiplexed` keeps up to `max_num_models_per_replica` loaded objects per
replica and evicts the least recently used (calling its `__del__`), and a handle call made with
`multiplexed_model_id` is routed to a replica that holds (or is loading) that id. Here the id is the version's
registry iteration, and the loaded object is the same per-version replica body a version gets as an application
of its own (`BatchedDeployment`'s class: its runtime, batcher and metrics), so a version answers alike either way.

What Ray leaves to us: a call whose version is not resident does not wait longer than `load_wait_s` (then 503 with
Retry-After while the load goes on), and the evicted version's batcher and threads are stopped.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ray import serve

from deployments.batched import BatchedDeployment
from deployments.metrics import metrics_for
from serve_app.errors import GatewayError, InvalidInput, LoadFailed, ModelNotReady
from serve_app.registry import Registry

log = logging.getLogger("ray.serve")

# An evicted version's calls already under way finish before its batcher stops (at most this long).
DRAIN_S = 60.0

VersionBody = BatchedDeployment.func_or_class  # the plain class: one version's runtime, batcher and metrics


class _Resident:
    """A loaded version as `@serve.multiplexed` holds it. Ray calls `__del__` (sync: on a worker thread) when it
    evicts the version; the batcher and thread pool are stopped on the replica's loop."""

    def __init__(self, owner: MultiplexedDeployment, label: str, body):
        self.owner, self.label, self.body = owner, label, body
        self.loop = asyncio.get_running_loop()
        self.closed = False

    def __del__(self):
        if self.closed or self.loop.is_closed():
            return
        self.closed = True  # (Python calls it again when the object is collected)
        self.loop.call_soon_threadsafe(self.owner.evicted, self)


@serve.deployment
class MultiplexedDeployment:
    def __init__(self, spec: dict):
        self.spec = spec
        self.name = spec["name"]
        mux = spec["multiplex"]
        self.load_wait_s = mux["load_wait_s"]
        self.metrics = metrics_for(spec.get("metrics", True))
        self.resident: dict[str, _Resident] = {}
        self.loading: dict[str, asyncio.Task] = {}
        # Decorated per replica, as Ray's docs allow (the cap is the config's, fixed when it decorates). A plain
        # function, not the bound method: Ray keeps its LRU wrapper as an attribute of what it decorates.
        async def load_version(label: str) -> _Resident:
            return await self._load_version(label)

        self.get_version = serve.multiplexed(max_num_models_per_replica=mux["max_versions_per_replica"])(
            load_version)

    async def _load_version(self, label: str) -> _Resident:
        """Resolve the iteration in the registry, then build the version's body off the event loop (the node's
        cache downloads it once per content hash and verifies its files on every load)."""
        if not label.isdigit():
            raise InvalidInput(f"model '{self.name}' is multiplexed by registry iteration; '{label}' is not one")
        reg = self.spec["registry"]
        registry = Registry(reg["uri"], reg["options"], Path(reg["cache_dir"]))
        version = await asyncio.to_thread(registry.resolve, f"{self.spec.get('registry_model') or self.name}@{label}")
        spec = {**self.spec, "iteration": version.iteration, "content_hash": version.content_hash}
        body = await asyncio.to_thread(VersionBody, spec)
        resident = _Resident(self, label, body)
        self.resident[label] = resident
        return resident

    def evicted(self, resident: _Resident) -> None:
        if self.resident.get(resident.label) is resident:
            del self.resident[resident.label]
        self.metrics.inc("gateway_multiplex_evictions", {"model": self.name, "version": resident.label})
        log.info("model %s: version %s evicted from this replica", self.name, resident.label)
        asyncio.get_running_loop().create_task(self._stop(resident.body))

    @staticmethod
    async def _stop(body) -> None:
        """Stop an evicted version's batcher (its waiting dispatcher holds the runtime) and threads, once the
        calls it had already taken are answered."""
        for _ in range(int(DRAIN_S / 0.1)):
            if body.in_flight == 0:
                break
            await asyncio.sleep(0.1)
        await body.batcher.close()
        body._pool.shutdown(wait=False)  # noqa: SLF001 - the body's own pool, no longer used

    def _label(self) -> str:
        label = serve.get_multiplexed_model_id()
        if not label:
            raise InvalidInput(f"model '{self.name}' is multiplexed: call it with a version")
        return label

    async def _version(self) -> _Resident:
        """The resident version this call names; loading it waits at most `load_wait_s`."""
        label = self._label()
        if label in self.resident:
            self._count(label, "hit")
            return await self.get_version(label)  # marks it most recently used
        task = self.loading.get(label)
        self._count(label, "wait" if task else "load")
        if task is None:
            task = self.loading[label] = asyncio.ensure_future(self.get_version(label))
            task.add_done_callback(lambda done: (self.loading.pop(label, None), done.cancelled() or done.exception()))
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.load_wait_s)
        except TimeoutError:
            raise ModelNotReady(f"version {label} of '{self.name}' is loading on this replica; retry shortly",
                                retry_after_s=1) from None  # a version loads in seconds
        except GatewayError:
            raise
        except Exception:
            log.exception("model %s: loading version %s failed", self.name, label)
            raise LoadFailed(f"version {label} of '{self.name}' failed to load; see the server log") from None

    def _count(self, label: str, outcome: str) -> None:
        self.metrics.inc("gateway_multiplex_requests", {"model": self.name, "version": label, "outcome": outcome})

    async def infer(self, texts: list[str], params: dict, priority: int | None = None) -> dict:
        return await (await self._version()).body.infer(texts, params, priority)

    async def info(self) -> dict:
        """The version's details where this replica holds it; else only that it loads on demand: a status call
        must not load versions (listing eight versions would churn every replica's cache)."""
        label = self._label()
        resident = self.resident.get(label)
        state = {"multiplex": {**self.multiplex_state(), "resident_here": resident is not None}}
        if resident is None:
            return state
        return {**await resident.body.info(), **state}

    def multiplex_state(self) -> dict:
        """What this replica holds (tests and the T1 bench read it through a handle)."""
        return {"resident": sorted(self.resident), "loading": sorted(self.loading),
                "max_versions_per_replica": self.spec["multiplex"]["max_versions_per_replica"]}

    def check_health(self) -> None:
        for resident in list(self.resident.values()):
            resident.body.check_health()
