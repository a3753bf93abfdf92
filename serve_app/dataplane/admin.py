"""Administration at run time: load and unload registry versions, and set each model's traffic split."""

from __future__ import annotations

import asyncio

from serve_app.config import ModelConfig
from serve_app.dataplane.backends import ModelManager
from serve_app.dataplane.status import Status
from serve_app.dataplane.table import ModelTable
from serve_app.errors import InvalidInput, ModelNotFound
from serve_app.plan import open_registry
from serve_app.registry.errors import RegistryError
from serve_app.tasks import contract


class Admin:
    def __init__(self, table: ModelTable, status: Status, manager: ModelManager | None = None):
        self.table = table
        self.status = status
        self.manager = manager
        # The traffic split the gateway started with, per model: what loading a version back restores.
        self.configured = {name: {label: e.weight for label, e in r.versions.items() if e.weight > 0}
                           for name, r in table.routes.items()}
        self._split_by_hand: set[str] = set()  # models whose traffic an admin has set since

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
        routes = self.table.routes[name]
        added = label not in routes.versions
        if added:
            routes.add(label, backend, weight=0.0, facts=getattr(backend, "facts", None))
        self._restore_traffic(name, label, added)
        self.table.publish_versions(name)
        return await self.status.model_status(name)

    def _restore_traffic(self, name: str, label: str, added: bool) -> None:
        routes = self.table.routes[name]
        configured = self.configured.get(name, {})
        weighted = {v for v, e in routes.versions.items() if e.weight > 0}
        # A configured version came back and only configured versions take traffic, with no split set by
        # hand since: the configured weights of those loaded. Else it waits for a weight, unless nothing
        # else takes traffic.
        if (label in configured and name not in self._split_by_hand and (added or not weighted)
                and weighted <= set(configured)):
            self._set_configured(name)
        elif not weighted:
            routes.set_weights({label: 1.0})

    def _set_configured(self, name: str) -> None:
        routes = self.table.routes[name]
        routes.set_weights({v: w for v, w in self.configured[name].items() if v in routes.versions})

    async def load_configured(self, name: str) -> dict:
        """Load back every version of the configured split that is not loaded, with the configured traffic
        (OIP load without a version: the model as configured, as Triton loads a model per its version policy)."""
        self.registry_model(name)
        configured = self.configured.get(name, {})
        for label in [v for v in configured if v not in self.table.routes[name].versions]:
            await self.load(name, label)
        weighted = {v for v, e in self.table.routes[name].versions.items() if e.weight > 0}
        if configured and weighted <= set(configured):
            self._split_by_hand.discard(name)
            self._set_configured(name)
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
        entry = self.table.routes[name].remove(label)  # stop routing to it before it goes away
        self.table.forget_answers(name, entry)
        if not self.table.routes[name].versions:
            self._split_by_hand.discard(name)  # nothing left to split: loading starts afresh
        self.table.publish_versions(name)
        await self.manager.unload(model, label)
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
        self.table.routes[name].set_weights(weights)
        self._split_by_hand.add(name)
        return await self.status.model_status(name)
