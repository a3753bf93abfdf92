"""Which loaded version of a model answers a request: a pinned version, or a weighted traffic split.

Plain Python (no Ray): the ingress keeps one `ModelRoutes` per model and changes it when versions are loaded,
unloaded or re-weighted at run time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from serve_app.errors import InvalidInput, ModelNotFound, ModelNotReady


@dataclass
class VersionEntry:
    label: str  # "3" for registry iteration 3; "sha256:<12 hex>" for a plain folder
    backend: object  # a dataplane.ModelBackend
    weight: float = 0.0
    content_hash: str = ""  # the version's content (response cache keys); "" keys by model and label instead
    accuracy: float | None = None  # its gated held-out accuracy (selection), None if not evaluated
    gated: bool = False  # passed its gate: a candidate for selection

    @property
    def cache_space(self) -> str:
        return self.content_hash or f"label:{self.label}"


class ModelRoutes:
    def __init__(self, model: str, rng: random.Random | None = None):
        self.model = model
        self.versions: dict[str, VersionEntry] = {}
        self._rng = rng or random.Random()

    def add(self, label: str, backend: object, weight: float = 0.0, facts: dict | None = None) -> None:
        """`facts`: content_hash, accuracy, gated (serve_app.plan.version_facts)."""
        known = {k: v for k, v in (facts or {}).items() if k in ("content_hash", "accuracy", "gated")}
        self.versions[label] = VersionEntry(label, backend, weight, **known)

    def remove(self, label: str) -> VersionEntry:
        entry = self.versions.pop(label, None)
        if entry is None:
            raise ModelNotFound(f"version {label} of '{self.model}' is not loaded; loaded: {self._loaded()}")
        return entry

    def set_weights(self, weights: dict[str, float]) -> None:
        """Replace the split. Every named version must be loaded; the others get weight 0 (pinned use only)."""
        unknown = sorted(set(weights) - set(self.versions))
        if unknown:
            raise InvalidInput(f"versions {unknown} of '{self.model}' are not loaded; loaded: {self._loaded()}")
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise InvalidInput("traffic weights must be >= 0 with a positive sum")
        for label, entry in self.versions.items():
            entry.weight = float(weights.get(label, 0.0))

    def shares(self) -> dict[str, float]:
        total = sum(e.weight for e in self.versions.values())
        return {label: (e.weight / total if total else 0.0) for label, e in self.versions.items()}

    def pick(self, pinned: str | None = None) -> VersionEntry:
        if pinned is not None:
            if pinned not in self.versions:
                raise ModelNotFound(f"version {pinned} of '{self.model}' is not loaded; loaded: {self._loaded()}")
            return self.versions[pinned]
        weighted = [e for e in self.versions.values() if e.weight > 0]
        if not weighted:
            if not self.versions:
                raise ModelNotReady(f"model '{self.model}' has no loaded version")
            raise ModelNotReady(f"model '{self.model}' has no version taking traffic; pin one with "
                                f"'{self.model}@<version>' or set its traffic")
        return self._rng.choices(weighted, weights=[e.weight for e in weighted])[0]

    def _loaded(self) -> str:
        return ", ".join(sorted(self.versions)) or "none"
