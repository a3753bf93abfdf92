"""The registry over one store: register, list, resolve, alias, remove, pull (into a content-hash cache), gc."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from serve_app.registry.errors import IntegrityError, SelectorError, UnsafeArtifactError, VersionNotFound
from serve_app.registry.store import Store, open_store
from serve_app.registry.versioning import content_hash, manifest
from serve_app.registry.versions import ALIAS_NAME, LATEST, MODEL_NAME, ModelVersion, parse_selector, resolve

# Weights only as safetensors, ONNX or GGUF (plain tensors and metadata), plus configs and tokenizer files. Never
# pickles (.bin, .pt, .pkl, ...): loading one runs arbitrary code.
SAFE_SUFFIXES = (".safetensors", ".onnx", ".onnx_data", ".gguf", ".json", ".txt", ".model", ".jinja", ".md")

Progress = Callable[[str, int], None]  # (file path, bytes done) after each file


def check_artifact_folder(folder: Path) -> list[dict]:
    """The manifest of `folder`, refusing anything that must never be registered or loaded."""
    if not folder.is_dir():
        raise UnsafeArtifactError(f"{folder} is not a folder")
    for path in folder.rglob("*"):
        if path.is_symlink():
            raise UnsafeArtifactError(f"{path.relative_to(folder)} is a symbolic link; copy the file instead")
        if path.is_file() and not path.name.endswith(SAFE_SUFFIXES):
            raise UnsafeArtifactError(
                f"{path.relative_to(folder)} may not be registered: only {', '.join(SAFE_SUFFIXES)} files "
                "(weights as safetensors, ONNX or GGUF; pickled checkpoints are refused)")
    entries = manifest(folder)
    if not entries:
        raise UnsafeArtifactError(f"{folder} holds no files")
    return entries


def verify_folder(folder: Path, version: ModelVersion) -> None:
    """Refuse a folder whose files differ from what `version` recorded."""
    actual = content_hash(folder)
    if actual != version.content_hash:
        raise IntegrityError(f"{version.label}: files in {folder} hash to {actual[:19]}…, expected "
                             f"{version.content_hash[:19]}…; refusing to load a corrupted or altered version")


class Registry:
    def __init__(self, uri: str, options: dict | None = None, cache_dir: Path | None = None):
        self.store: Store = open_store(uri, options)
        self.cache_dir = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "inference-gateway"
        self.uri = uri

    # -- reading ------------------------------------------------------------------------------------------
    def _ls(self, *parts: str) -> list[str]:
        path = self.store.path(*parts) if parts else self.store.root
        if not self.store.fs.exists(path):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.store.fs.ls(path, detail=False))

    def _read_json(self, *parts: str):
        with self.store.fs.open(self.store.path(*parts), "rb") as f:
            return json.loads(f.read())

    def _write_json(self, data, *parts: str) -> None:
        with self.store.fs.open(self.store.path(*parts), "wb") as f:
            f.write(json.dumps(data, indent=2, default=str).encode())

    def models(self) -> list[str]:
        return [n for n in self._ls() if MODEL_NAME.match(n) and self.versions(n)]

    def versions(self, name: str) -> list[ModelVersion]:
        found = []
        for entry in self._ls(name, "versions"):
            if entry.isdigit() and self.store.fs.exists(self.store.path(name, "versions", entry, "version.json")):
                found.append(ModelVersion.model_validate(self._read_json(name, "versions", entry, "version.json")))
        return sorted(found, key=lambda v: v.iteration)

    def aliases(self, name: str) -> dict[str, int]:
        if not self.store.fs.exists(self.store.path(name, "aliases.json")):
            return {}
        return {k: int(v) for k, v in self._read_json(name, "aliases.json").items()}

    def resolve(self, selector: str) -> ModelVersion:
        sel = parse_selector(selector)
        return resolve(sel, self.versions(sel.name), self.aliases(sel.name))

    # -- writing ------------------------------------------------------------------------------------------
    def _claim_iteration(self, name: str) -> int:
        """Take the next iteration with an exclusive create, so concurrent writers never share one."""
        taken = [int(c) for c in self._ls(name, "claims") if c.isdigit()]
        n = max(taken, default=0) + 1
        while True:
            try:
                with self.store.fs.open(self.store.path(name, "claims", str(n)), "xb") as f:
                    f.write(json.dumps({"claimed_at": time.time(), "by": uuid.uuid4().hex}).encode())
                return n
            except FileExistsError:
                n += 1

    def register(self, name: str, folder: Path, *, parent: int | None = None, transform: str | None = None,
                 tags: dict[str, str] | None = None, metrics: dict[str, float] | None = None,
                 source_uri: str | None = None, on_progress: Progress | None = None) -> ModelVersion:
        """Publish `folder` as the next version of `name`; it becomes visible only once complete."""
        if not MODEL_NAME.match(name):
            raise SelectorError(f"model name {name!r} must be lowercase letters, digits, '-' or '_'")
        folder = Path(folder)
        entries = check_artifact_folder(folder)
        for entry in entries:
            self.store.path(entry["path"])  # refuses odd names before anything is written
        if parent is not None and parent not in {v.iteration for v in self.versions(name)}:
            raise VersionNotFound(f"parent {name}@{parent} does not exist")
        iteration = self._claim_iteration(name)
        files_dir = self.store.path(name, "versions", str(iteration), "files")
        try:
            done = 0
            for entry in entries:
                self.store.fs.put_file(str(folder / entry["path"]), f"{files_dir}/{entry['path']}")
                done += entry["size"]
                if on_progress:
                    on_progress(entry["path"], done)
            version = ModelVersion(
                name=name, iteration=iteration, created_at=datetime.now(UTC),
                content_hash=content_hash(folder), source_uri=source_uri or str(folder.resolve()),
                parent=parent, transform=transform, tags=tags or {}, metrics=metrics or {}, files=entries)
            # version.json last: readers list a version only once this file exists.
            self._write_json(version.model_dump(mode="json"), name, "versions", str(iteration), "version.json")
        except BaseException:
            self._remove_tree(self.store.path(name, "versions", str(iteration)))
            raise
        return version

    def set_alias(self, name: str, alias: str, selector: str) -> ModelVersion:
        if alias == LATEST or not ALIAS_NAME.match(alias) or alias.isdigit():
            raise SelectorError(f"alias {alias!r} is not allowed; use lowercase letters, digits, '-' or '_' "
                                f"(and not '{LATEST}', which always means the newest iteration)")
        version = self.resolve(selector if "@" in selector else f"{name}@{selector}")
        if version.name != name:
            raise SelectorError(f"{selector} is a version of '{version.name}', not '{name}'")
        aliases = self.aliases(name) | {alias: version.iteration}
        self._write_json(aliases, name, "aliases.json")
        return version

    def remove_alias(self, name: str, alias: str) -> None:
        aliases = self.aliases(name)
        if alias not in aliases:
            raise VersionNotFound(f"model '{name}' has no alias '{alias}'")
        del aliases[alias]
        self._write_json(aliases, name, "aliases.json")

    def remove(self, selector: str) -> ModelVersion:
        """Remove one version (its iteration stays taken); aliases pointing at it go too."""
        version = self.resolve(selector)
        base = self.store.path(version.name, "versions", str(version.iteration))
        self.store.fs.rm(f"{base}/version.json")  # invisible first, then the files
        self._remove_tree(base)
        aliases = {k: v for k, v in self.aliases(version.name).items() if v != version.iteration}
        self._write_json(aliases, version.name, "aliases.json")
        return version

    def _remove_tree(self, path: str) -> None:
        if self.store.fs.exists(path):
            self.store.fs.rm(path, recursive=True)

    # -- local cache --------------------------------------------------------------------------------------
    def cached_path(self, version: ModelVersion) -> Path:
        return self.cache_dir / version.content_hash.split(":", 1)[1]

    def pull(self, selector: str | ModelVersion, on_progress: Progress | None = None,
             verify: bool = True) -> Path:
        """A verified local copy of the version's files, downloaded once per content hash."""
        version = selector if isinstance(selector, ModelVersion) else self.resolve(selector)
        target = self.cached_path(version)
        if not target.is_dir():
            tmp = self.cache_dir / f".{target.name}.{uuid.uuid4().hex}.partial"
            tmp.mkdir(parents=True)
            try:
                files_dir = self.store.path(version.name, "versions", str(version.iteration), "files")
                done = 0
                for entry in version.files:
                    self.store.path(entry["path"])  # a tampered version.json cannot point outside the store
                    (tmp / entry["path"]).parent.mkdir(parents=True, exist_ok=True)
                    self.store.fs.get_file(f"{files_dir}/{entry['path']}", str(tmp / entry["path"]))
                    done += entry["size"]
                    if on_progress:
                        on_progress(entry["path"], done)
                verify_folder(tmp, version)
                try:
                    tmp.rename(target)
                except OSError:  # another process finished the same pull first
                    pass
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return target
        if verify:
            verify_folder(target, version)
        return target

    def gc(self, min_age_s: float = 3600.0) -> dict[str, list[str]]:
        """Remove unfinished publishes older than `min_age_s` and cache entries of no current version."""
        removed: dict[str, list[str]] = {"store": [], "cache": []}
        now = time.time()
        live_hashes = set()
        for name in self._ls():
            if not MODEL_NAME.match(name):
                continue
            for entry in self._ls(name, "versions"):
                base = self.store.path(name, "versions", entry)
                if self.store.fs.exists(f"{base}/version.json"):
                    continue
                claim = self.store.path(name, "claims", entry)
                claimed_at = self._read_json(name, "claims", entry)["claimed_at"] if (
                    entry.isdigit() and self.store.fs.exists(claim)) else 0
                if now - claimed_at >= min_age_s:
                    self._remove_tree(base)
                    removed["store"].append(f"{name}/versions/{entry}")
            live_hashes |= {v.content_hash.split(":", 1)[1] for v in self.versions(name)}
        if self.cache_dir.is_dir():
            for entry in self.cache_dir.iterdir():
                stale_partial = entry.name.endswith(".partial") and now - entry.stat().st_mtime >= min_age_s
                if stale_partial or (not entry.name.startswith(".") and entry.name not in live_hashes):
                    shutil.rmtree(entry, ignore_errors=True)
                    removed["cache"].append(entry.name)
        return removed
