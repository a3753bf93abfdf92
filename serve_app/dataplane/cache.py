"""Response cache: a model version's answer to the same inputs and parameters, kept for a while.

Like Triton's response cache, answers are keyed by a hash of the request, here with the content hash of the
version that answers in front: a new version is a new key space, and unloading a version drops its entries
(nothing answers from a version that is gone). The cache is bounded in bytes (answers are stored serialized,
so their size is exact and a hit returns a fresh copy nobody else holds), evicts the least recently used entry
first, and lets entries expire after `ttl_s`. A request with `Cache-Control: no-cache` skips the lookup (and
refreshes the entry with its answer).

Off unless a model or pipeline asks for it in the config, and never for sampled generation (its answers are
meant to differ). Pure Python, no Ray.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


def request_key(content_hash: str, texts: list[str], params: dict) -> str:
    """What identifies an answer: the version's content, the inputs and the parameters (in a canonical form)."""
    body = json.dumps([texts, params], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{content_hash}/{hashlib.sha256(body.encode()).hexdigest()}"


@dataclass
class _Entry:
    blob: bytes
    expires: float


class ResponseCache:
    def __init__(self, max_bytes: int, ttl_s: float, clock: Callable[[], float] = time.monotonic):
        if max_bytes < 1 or ttl_s <= 0:
            raise ValueError("a response cache needs max_bytes >= 1 and ttl_s > 0")
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.clock = clock
        self.entries: OrderedDict[str, _Entry] = OrderedDict()
        self.bytes = 0
        self.evictions = 0

    def get(self, key: str) -> dict | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self.clock():
            self._drop(key)
            return None
        self.entries.move_to_end(key)
        return json.loads(entry.blob)

    def put(self, key: str, answer: dict) -> bool:
        """Keep `answer` under `key`; False when it is not JSON (then it is not kept: the caller still has it)
        or alone larger than the whole cache."""
        try:
            blob = json.dumps(answer, separators=(",", ":")).encode()
        except (TypeError, ValueError):
            return False
        size = len(blob) + len(key)
        if size > self.max_bytes:
            return False
        if key in self.entries:
            self._drop(key)
        while self.bytes + size > self.max_bytes:
            self._drop(next(iter(self.entries)))
            self.evictions += 1
        self.entries[key] = _Entry(blob, self.clock() + self.ttl_s)
        self.bytes += size
        return True

    def drop_version(self, content_hash: str) -> int:
        """Forget every answer of one version (it was unloaded); returns how many."""
        keys = [k for k in self.entries if k.startswith(content_hash + "/")]
        for key in keys:
            self._drop(key)
        return len(keys)

    def _drop(self, key: str) -> None:
        entry = self.entries.pop(key)
        self.bytes -= len(entry.blob) + len(key)
