"""Metadata and readiness: what each model and pipeline is, which versions are loaded, which answer."""

from __future__ import annotations

import asyncio

from serve_app.dataplane.routing import VersionEntry
from serve_app.dataplane.table import ModelTable
from serve_app.errors import ModelNotReady
from serve_app.pipelines.validate import models_used, output_fields
from serve_app.tasks import contract

READY_TIMEOUT_S = 2.0


class Status:
    def __init__(self, table: ModelTable):
        self.table = table

    async def _version_status(self, entry: VersionEntry, share: float) -> dict:
        try:
            info = await asyncio.wait_for(entry.backend.info(), READY_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - any failure to answer means "not ready"
            return {"version": entry.label, "ready": False, "traffic_share": share}
        return {**info, "version": entry.label, "ready": True, "traffic_share": share}

    def serving_options(self, name: str) -> dict:
        """Selection (each loaded variant's gated accuracy and expected latency now) and the response cache."""
        model, out = self.table.model(name), {}
        if model.selection is not None:
            out["selection"] = {"on_unmet": model.selection.on_unmet, "variants": [
                {"version": c.label, "accuracy": c.accuracy, "gated": c.gated,
                 "expected_ms": None if c.expected_ms is None else round(c.expected_ms, 2)}
                for c in self.table.candidates(name)]}
        cache = self.table.cache_for(name)
        if cache is not None:
            out["cache"] = {"max_bytes": cache.max_bytes, "ttl_s": cache.ttl_s, "bytes": cache.bytes,
                            "entries": len(cache.entries)}
        return out

    async def model_status(self, name: str) -> dict:
        model = self.table.model(name)
        routes = self.table.routes[name]
        shares = routes.shares()
        versions = await asyncio.gather(*(self._version_status(e, shares[e.label])
                                          for e in routes.versions.values()))
        # `route`: the simple JSON route of its task (stream jobs find a target's default model by it).
        return {"name": model.name, "task": str(model.task), "route": contract(model.task).route,
                "runtime": model.runtime.value,
                "batching": {"max_batch_size": model.batching.max_batch_size},  # stream jobs size batches by it
                "ready": any(v["ready"] and v["traffic_share"] > 0 for v in versions),
                "versions": sorted(versions, key=lambda v: v["version"]), **self.serving_options(name),
                **({"shadow": shadow.summary()} if (shadow := self.table.mirrors.shadows.get(name)) else {})}

    async def version_ready(self, name: str, version: str | None) -> bool:
        status = await self.model_status(name)
        if version is None:
            return status["ready"]
        return any(v["version"] == version and v["ready"] for v in status["versions"])

    async def list_models(self) -> dict:
        models = await asyncio.gather(*(self.model_status(m.name) for m in self.table.config.models))
        # Which ingress replica answered and the revision of the shared routing state it serves (replicas
        # converge within a poll interval of an admin change).
        return {"models": list(models), "routing": {"revision": self.table.revision, "replica": self.table.replica}}

    async def ready(self) -> dict:
        listing = await self.list_models()
        not_ready = [m["name"] for m in listing["models"] if not m["ready"]]
        if not_ready:
            raise ModelNotReady("models not ready: " + ", ".join(not_ready), models=not_ready)
        return {"ready": True}

    def pipeline_fields(self, name: str) -> dict[str, str]:
        return output_fields(self.table.config.pipelines, self.table.task_of(), self.table.pipeline(name).name)

    def describe_pipeline(self, name: str) -> dict:
        pipeline = self.table.pipeline(name)
        return {"name": pipeline.name, "description": pipeline.description,
                "output_fields": self.pipeline_fields(name),
                "graph": pipeline.graph.model_dump(mode="json", exclude_none=True)}

    def list_pipelines(self) -> dict:
        return {"pipelines": [self.describe_pipeline(p.name) for p in self.table.config.pipelines]}

    async def pipeline_status(self, name: str) -> dict:
        """A pipeline is ready when every model it calls can answer (for a pinned `model@3`: that version)."""
        self.table.pipeline(name)
        refs = sorted(models_used(self.table.config.pipelines, name))
        names = sorted({r.partition("@")[0] for r in refs})
        ready = dict(zip(names, await asyncio.gather(*(self.model_status(n) for n in names)), strict=True))
        not_ready = []
        for ref in refs:
            model, _, pinned = ref.partition("@")
            status = ready[model]
            if not (any(v["version"] == pinned and v["ready"] for v in status["versions"]) if pinned
                    else status["ready"]):
                not_ready.append(ref)
        return {"name": name, "ready": not not_ready,
                "reason": "models not ready: " + ", ".join(not_ready) if not_ready else ""}
