"""Content identity of a model folder: sha256 over a canonical manifest of file names, sizes and hashes.

Two folders with the same files hash the same wherever they live; any changed byte changes the hash.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def manifest(folder: Path) -> list[dict]:
    """Sorted entries {path, size, sha256} for every regular file under `folder` (POSIX relative paths)."""
    entries = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        entries.append({"path": rel, "size": path.stat().st_size, "sha256": file_sha256(path)})
    return entries


def content_hash(folder: Path) -> str:
    """'sha256:<hex>' of the canonical JSON manifest of `folder`."""
    canonical = json.dumps(manifest(folder), sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def short(content: str, n: int = 12) -> str:
    return content.split(":", 1)[-1][:n]
