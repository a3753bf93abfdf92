"""Administration at run time: load and unload registry versions, and set each model's traffic split."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from serve_app.config import ModelConfig
from serve_app.dataplane.backends import ModelManager
from serve_app.dataplane.route_state import apply, apps, by_hand, editing, models_doc, set_by_hand
from serve_app.dataplane.routing import ModelRoutes
from serve_app.dataplane.shared_state import MemoryKV, SharedRoutes
from serve_app.dataplane.status import Status
from serve_app.dataplane.table import ModelTable
from serve_app.errors import InvalidInput, ModelNotFound
from serve_app.plan import open_registry
from serve_app.registry.errors import RegistryError
from serve_app.tasks import contract


class Admin:
    """Admin calls edit the shared routing state (`SharedRoutes`, one per gateway deployment), then bring this
    replica's routes to it; `sync` brings them to changes other replicas made. Without a shared store (one
    process) the state lives in memory."""

    def __init__(self, table: ModelTable, status: Status, manager: ModelManager | None = None,
                 shared: SharedRoutes | None = None, protected: Iterable[str] = ()):
        self.table = table
        self.status = status
        self.manager = manager
        self.shared = shared or SharedRoutes(MemoryKV(), "gateway")
        # The traffic split the gateway started with, per model: what loading a version back restores.
        self.configured = {name: {label: e.weight for label, e in r.versions.items() if e.weight > 0}
                           for name, r in table.routes.items()}
        self.applied = 0  # the revision this replica's routes are at
        self._orphans: set[str] = set()  # applications no revision routes to, seen at the last sweep
        # Applications the deployment itself started (a declarative deploy may start one it does not route to):
        # never swept; those it routes to are also in the state.
        self.protected = set(protected)
        # The first replica seeds the state with the configured routes; a later or restarted one takes up the
        # state as the others left it (versions loaded or unloaded, traffic set at run time).
        seed = models_doc(table.routes)
        self._apply(self.shared.commit(lambda doc: doc["rev"] == 0 and doc.update(models=seed)))

    def _attach(self, name: str, label: str, app: str) -> object:
        if self.manager is None:
            raise InvalidInput("this gateway cannot load versions at run time")
        return self.manager.attach(self.table.model(name), label, app)

    def _apply(self, doc: dict) -> None:
        if doc["rev"] <= self.applied:
            return
        for name, entries in apply(doc, self.table.routes, self._attach).items():
            for entry in entries:
                self.table.forget_answers(name, entry)
        for name, state in doc["models"].items():
            if name in self.table.routes:
                self.table.publish_versions(name)
                self.table.mirrors.configure(name, state.get("shadow"))
        self.applied = self.table.revision = doc["rev"]

    async def _commit(self, change) -> None:
        """Write a change to the shared state (a GCS round trip: off the event loop) and take it up here."""
        self._apply(await asyncio.to_thread(self.shared.commit, change))

    async def sync(self) -> None:
        """Take up the newest shared state (the ingress calls this every `SYNC_INTERVAL_S`)."""
        self._apply(await asyncio.to_thread(self.shared.read))

    async def sweep(self) -> list[str]:
        """Delete the applications of this gateway's models that no revision routes to, once they were seen so
        at two sweeps in a row (a version being deployed is not swept: its load commits within milliseconds of
        serve.run returning). Returns those deleted."""
        if self.manager is None:
            return []
        doc = await asyncio.to_thread(self.shared.read)
        orphans = set(await self.manager.orphans(self.table.config, apps(doc) | self.protected))
        doomed, self._orphans = sorted(orphans & self._orphans), orphans - self._orphans
        for app in doomed:
            await self.manager.delete(app)
        return doomed

    def registry_model(self, name: str) -> ModelConfig:
        model = self.table.model(name)
        if model.source is not None:
            raise InvalidInput(f"model '{name}' is served from a folder, not the registry; register it and "
                               "drop 'source' to load versions at run time")
        if self.manager is None:
            raise InvalidInput("this gateway cannot load versions at run time")
        return model

    async def load(self, name: str, selector: str) -> dict:
        """Deploy a registry version next to those already serving. A canary takes no traffic until weighted,
        but a version of the configured split gets its configured weight back, and a version loaded while
        nothing else takes traffic takes all of it: a model is never left loaded but unable to answer."""
        model = self.registry_model(name)
        label, backend = await self.manager.load(model, selector)
        app = getattr(backend, "app", None) or label
        facts = getattr(backend, "facts", None)

        def add(doc: dict) -> None:
            with editing(doc, name) as routes:
                # (in the document's view a version's backend is its application's name)
                added = label not in routes.versions or routes.versions[label].backend != app
                if added:
                    routes.add(label, app, weight=0.0, facts=facts)
                self._restore_traffic(routes, by_hand(doc, name), label, added)

        await self._commit(add)
        return await self.status.model_status(name)

    def _restore_traffic(self, routes: ModelRoutes, split_by_hand: bool, label: str, added: bool) -> None:
        configured = self.configured.get(routes.model, {})
        weighted = {v for v, e in routes.versions.items() if e.weight > 0}
        # A configured version came back and only configured versions take traffic, with no split set by
        # hand since: the configured weights of those loaded. Else it waits for a weight, unless nothing
        # else takes traffic.
        if label in configured and not split_by_hand and (added or not weighted) and weighted <= set(configured):
            routes.set_weights({v: w for v, w in configured.items() if v in routes.versions})
        elif not weighted:
            routes.set_weights({label: 1.0})

    async def load_configured(self, name: str) -> dict:
        """Load back every version of the configured split that is not loaded, with the configured traffic
        (OIP load without a version: the model as configured, as Triton loads a model per its version policy)."""
        self.registry_model(name)
        configured = self.configured.get(name, {})
        for label in [v for v in configured if v not in self.table.routes[name].versions]:
            await self.load(name, label)

        def restore(doc: dict) -> bool | None:
            with editing(doc, name) as routes:
                weighted = {v for v, e in routes.versions.items() if e.weight > 0}
                if not (configured and weighted <= set(configured)):
                    return False
                routes.set_weights({v: w for v, w in configured.items() if v in routes.versions})
            set_by_hand(doc, name, False)
            return None

        await self._commit(restore)
        return await self.status.model_status(name)

    async def loaded_label(self, name: str, selector: str) -> str:
        """The loaded version a selector names: a loaded label as is, else a registry selector (`canary`,
        `stable`, `sha256:3fa1`) resolved to its iteration, so admin calls can say `canary` instead of
        looking the number up. Unknown or unloaded ones come back unchanged (routing then says "not loaded")."""
        if selector in self.table.routes[name].versions:
            return selector
        model = self.table.model(name)
        if model.source is not None or not contract(model.task).has_files:
            return selector
        try:
            registry = open_registry(self.table.config)  # opened here: folder-only configs need no registry
            version = await asyncio.to_thread(registry.resolve, f"{model.registry_name}@{selector}")
        except (RegistryError, InvalidInput, ModelNotFound):
            return selector
        return str(version.iteration)

    async def unload(self, name: str, label: str) -> dict:
        model = self.registry_model(name)
        label = await self.loaded_label(name, label)

        def remove(doc: dict) -> None:
            with editing(doc, name) as routes:
                routes.remove(label)  # "not loaded" when it is not (or another call just removed it)
                if not routes.versions:
                    set_by_hand(doc, name, False)  # nothing left to split: loading starts afresh
            if (doc["models"][name].get("shadow") or {}).get("version") == label:
                doc["models"][name]["shadow"] = None  # nothing left to mirror to

        await self._commit(remove)  # every replica stops routing to it (this one at once) before it goes away
        await asyncio.sleep(self.shared.settle_s)
        await self.manager.unload(model, label)
        return await self.status.model_status(name)

    async def set_shadow(self, name: str, body: object) -> dict:
        """Mirror `share` of the model's calls to a loaded version (`{"version": "4", "share": 0.5}`), or stop
        (`{}` or null); the version must be loaded (a canary at weight 0 is the usual one)."""
        self.table.model(name)
        if body is None or body == {}:
            wanted = None
        else:
            if not isinstance(body, dict) or set(body) - {"version", "share"} or not isinstance(body.get("version"),
                                                                                                  str):
                raise InvalidInput('shadow must be {"version": "<loaded version>", "share": 0-1}, or {} to stop')
            share = body.get("share", 1.0)
            if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
                raise InvalidInput("shadow.share: a number above 0 and at most 1", field="share")
            label = await self.loaded_label(name, body["version"])
            self.table.routes[name].pick(label)  # "not loaded" names what is
            wanted = {"version": label, "share": float(share)}

        def mirror(doc: dict) -> None:
            with editing(doc, name) as routes:
                if wanted is not None:
                    routes.pick(wanted["version"])  # still loaded, as this change lands
            doc["models"][name]["shadow"] = wanted

        await self._commit(mirror)
        return await self.status.model_status(name)

    async def set_traffic(self, name: str, body: object) -> dict:
        self.table.model(name)
        if not isinstance(body, dict) or not body or not all(
                isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
                for k, v in body.items()):
            raise InvalidInput('traffic must be a JSON object of version: weight, e.g. {"3": 90, "4": 10}')
        weights = {await self.loaded_label(name, k): float(v) for k, v in body.items()}
        if len(weights) < len(body):
            raise InvalidInput("traffic names one version twice (a selector and its iteration?)")

        def split(doc: dict) -> None:  # last writer wins
            with editing(doc, name) as routes:
                routes.set_weights(weights)
            set_by_hand(doc, name, True)

        await self._commit(split)
        return await self.status.model_status(name)
