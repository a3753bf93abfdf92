"""Versions, aliases and selectors: `name@7`, `name@sha256:3fa1…`, `name@2026-11-26T10:00:00Z`, `name@stable`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from serve_app.registry.errors import SelectorError, VersionNotFound

MODEL_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
ALIAS_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
LATEST = "latest"  # derived: the highest iteration; never stored


class ModelVersion(BaseModel):
    """One registered version. Stored as version.json next to its files."""

    model_config = ConfigDict(extra="forbid")

    name: str
    iteration: int = Field(ge=1)
    created_at: datetime
    content_hash: str
    source_uri: str | None = None
    parent: int | None = None  # iteration this version was derived from
    transform: str | None = None  # e.g. "int8": with parent 3 reads "int8 of v3"
    tags: dict[str, str] = {}
    metrics: dict[str, float] = {}
    files: list[dict] = []  # the manifest: {path, size, sha256}

    @property
    def label(self) -> str:
        return f"{self.name}@{self.iteration}"

    @property
    def lineage(self) -> str | None:
        if self.parent is None:
            return None
        return f"{self.transform or 'derived'} of v{self.parent}"

    @property
    def size(self) -> int:
        return sum(f["size"] for f in self.files)


@dataclass(frozen=True)
class Selector:
    name: str
    kind: Literal["iteration", "hash", "time", "alias"]
    value: str

    def __str__(self) -> str:
        return f"{self.name}@{self.value}"


def parse_time(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SelectorError(f"{value!r} is not an ISO-8601 time such as 2026-11-26T10:00:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_selector(text: str) -> Selector:
    """Parse `name[@version]`; a bare name means `name@latest`."""
    name, _, spec = text.partition("@")
    if not MODEL_NAME.match(name):
        raise SelectorError(f"model name {name!r} must be lowercase letters, digits, '-' or '_', "
                            "starting with a letter")
    spec = spec or LATEST
    if spec.isdigit():
        return Selector(name, "iteration", spec)
    if spec.startswith("sha256:"):
        if not re.fullmatch(r"sha256:[0-9a-f]{4,64}", spec):
            raise SelectorError(f"{spec!r}: give at least 4 lowercase hex digits after 'sha256:'")
        return Selector(name, "hash", spec)
    if re.match(r"^\d{4}-\d{2}-\d{2}", spec):
        parse_time(spec)
        return Selector(name, "time", spec)
    if ALIAS_NAME.match(spec):
        return Selector(name, "alias", spec)
    raise SelectorError(f"version selector {spec!r} is not an iteration (7), a hash prefix (sha256:3fa1), "
                        "a UTC time (2026-11-26T10:00:00Z) or an alias (stable)")


def resolve(selector: Selector, versions: list[ModelVersion], aliases: dict[str, int]) -> ModelVersion:
    """Exactly one version for `selector`, or a clear error."""
    if not versions:
        raise VersionNotFound(f"model '{selector.name}' has no versions")
    by_iteration = {v.iteration: v for v in versions}
    if selector.kind == "iteration":
        found = by_iteration.get(int(selector.value))
    elif selector.kind == "hash":
        matches = [v for v in versions if v.content_hash.startswith(selector.value)]
        if len(matches) > 1:
            raise SelectorError(f"{selector} is ambiguous: matches iterations "
                                f"{sorted(v.iteration for v in matches)}; give more hex digits")
        found = matches[0] if matches else None
    elif selector.kind == "time":
        when = parse_time(selector.value)
        earlier = [v for v in versions if v.created_at <= when]
        found = max(earlier, key=lambda v: (v.created_at, v.iteration)) if earlier else None
    elif selector.value == LATEST:
        found = max(versions, key=lambda v: v.iteration)
    else:
        iteration = aliases.get(selector.value)
        if iteration is None:
            known = ", ".join(sorted([LATEST, *aliases])) or LATEST
            raise VersionNotFound(f"model '{selector.name}' has no alias '{selector.value}'; known: {known}")
        found = by_iteration.get(iteration)
    if found is None:
        raise VersionNotFound(f"no version of '{selector.name}' matches {selector}")
    return found
