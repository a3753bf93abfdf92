"""The shared routing document (dataplane/shared_state.py) and a replica's live `ModelRoutes`: the document made
from the routes a replica starts with, edits of the document through `ModelRoutes`' own checks, and a replica's
routes brought to a revision of it.

A model's entry: {"versions": {label: {"app", "weight", "content_hash", "accuracy", "gated"}}, "by_hand": bool};
`by_hand`: an admin has set the split since the configured one (loading a configured version back then no
longer restores the configured weights)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from serve_app.dataplane.routing import ModelRoutes, VersionEntry

FACTS = ("content_hash", "accuracy", "gated")
# A backend for a version loaded by any replica: (model name, label, Serve application) -> ModelBackend.
Attach = Callable[[str, str, str], object]


def app_of(entry: VersionEntry) -> str:
    """The Serve application behind a version (the label where the backend names none: in-process fakes)."""
    return getattr(entry.backend, "app", None) or entry.label


def version_doc(entry: VersionEntry, app: str) -> dict:
    return {"app": app, "weight": entry.weight, **{k: getattr(entry, k) for k in FACTS}}


def models_doc(routes: dict[str, ModelRoutes]) -> dict:
    """The document's models as a replica's routes have them (the first replica's start seeds the document)."""
    return {name: {"versions": {label: version_doc(e, app_of(e)) for label, e in r.versions.items()},
                   "by_hand": False} for name, r in routes.items()}


@contextmanager
def editing(doc: dict, name: str) -> Iterator[ModelRoutes]:
    """A model of the document as `ModelRoutes` (backends hold the application names), so an edit gets the same
    checks and errors as live routes; written back to the document when the block ends without an error."""
    state = doc["models"].setdefault(name, {"versions": {}, "by_hand": False})
    routes = ModelRoutes(name)
    for label, v in state["versions"].items():
        routes.add(label, v["app"], v["weight"], facts=v)
    yield routes
    state["versions"] = {label: version_doc(e, e.backend) for label, e in routes.versions.items()}


def by_hand(doc: dict, name: str) -> bool:
    return doc["models"].get(name, {}).get("by_hand", False)


def set_by_hand(doc: dict, name: str, value: bool) -> None:
    doc["models"].setdefault(name, {"versions": {}, "by_hand": False})["by_hand"] = value


def apply(doc: dict, routes: dict[str, ModelRoutes], attach: Attach | None) -> dict[str, list[VersionEntry]]:
    """Bring `routes` to the document: versions it no longer has leave, versions it gained are attached, weights
    follow. Returns the entries removed per model (their cached answers are dropped by the caller)."""
    removed: dict[str, list[VersionEntry]] = {}
    for name, state in doc["models"].items():
        live, wanted = routes.get(name), state["versions"]
        if live is None:  # a model this replica's config does not have (an older deployment's state)
            continue
        for label in [label for label in live.versions if label not in wanted]:
            removed.setdefault(name, []).append(live.remove(label))
        for label, v in wanted.items():
            entry = live.versions.get(label)
            if entry is None or app_of(entry) != v["app"]:
                if attach is None:
                    raise RuntimeError(f"version {label} of '{name}' is loaded elsewhere but this gateway "
                                       "cannot attach versions")
                live.add(label, attach(name, label, v["app"]), v["weight"], facts=v)
            else:
                entry.weight = v["weight"]
    return removed


def apps(doc: dict) -> set[str]:
    """Every Serve application the document routes to."""
    return {v["app"] for state in doc["models"].values() for v in state["versions"].values()}
