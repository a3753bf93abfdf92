"""Routing state that outlives an ingress replica and is shared by all of them: which versions of each model are
loaded (their Serve applications), their traffic weights and facts, and whether an admin set the split by hand.

The state is one JSON document kept as a log of revisions in a key-value store (`KV`): revision n+1 is written
with create-if-absent, so of two replicas changing the state at once exactly one wins each revision; the other
re-reads and applies its change on top of the winner's (`SharedRoutes.commit`). Conflicting admin calls thus
both take effect, in the order their commits landed: for a traffic split the last writer wins, an unload of a
version another call just removed fails as "not loaded". Replicas poll the newest revision (a hint key, then
create-if-absent keys past it), so a change is seen everywhere within one poll interval.

Plain Python: `MemoryKV` serves one process (unit tests, a single replica); in Ray, deployments/state_kv.py
puts the log in the GCS key-value store.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Protocol

import orjson

KEEP_REVISIONS = 16  # older revisions are deleted; a reader that far behind re-reads the newest


class KV(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...

    def put_new(self, key: str, value: bytes) -> bool:
        """Create `key` with `value` unless it exists, atomically; True when this call created it."""

    def delete(self, key: str) -> None: ...


class MemoryKV:
    """A KV in this process (one replica, unit tests)."""

    def __init__(self):
        self.data: dict[str, bytes] = {}
        self.lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def put(self, key: str, value: bytes) -> None:
        self.data[key] = value

    def put_new(self, key: str, value: bytes) -> bool:
        with self.lock:
            if key in self.data:
                return False
            self.data[key] = value
            return True

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


def empty_doc() -> dict:
    return {"rev": 0, "models": {}}


class Conflict(RuntimeError):
    """Too many other writers won in a row (never seen in practice: each retry takes one GCS round trip)."""


class SharedRoutes:
    """The revision log of one gateway deployment's routing state, under `prefix` in `kv`."""

    def __init__(self, kv: KV, prefix: str, settle_s: float = 0.0):
        self.kv, self.prefix = kv, prefix
        # How long a change takes to reach every replica (a poll interval and a margin): an unloaded version's
        # application is deleted only after this, so no replica still routes to it.
        self.settle_s = settle_s

    def _rev_key(self, rev: int) -> str:
        return f"{self.prefix}/rev/{rev:012d}"

    def read(self) -> dict:
        """The newest revision (revision 0, empty, before the first commit)."""
        rev = int(self.kv.get(f"{self.prefix}/head") or 0)
        doc = empty_doc()
        if rev:
            raw = self.kv.get(self._rev_key(rev))
            for _ in range(2 * KEEP_REVISIONS):  # the hint's revision was pruned: the kept ones are past it
                if raw is not None:
                    break
                rev += 1
                raw = self.kv.get(self._rev_key(rev))
            if raw is None:
                raise Conflict(f"routing state {self.prefix}: revision {rev} and those after it are missing")
            doc = orjson.loads(raw)
        while (raw := self.kv.get(self._rev_key(rev + 1))) is not None:  # the hint lags a writer
            rev, doc = rev + 1, orjson.loads(raw)
        return doc

    def commit(self, change: Callable[[dict], bool | None], attempts: int = 50) -> dict:
        """Apply `change` to a copy of the newest document and write it as the next revision; on a lost race,
        re-read and apply it again (so `change` must only edit the document, and may raise to refuse).
        `change` returning False means "nothing to change": no revision is written."""
        for _ in range(attempts):
            current = self.read()
            doc = copy.deepcopy(current)
            if change(doc) is False:
                return current
            doc["rev"] = current["rev"] + 1
            if self.kv.put_new(self._rev_key(doc["rev"]), orjson.dumps(doc)):
                self.kv.put(f"{self.prefix}/head", str(doc["rev"]).encode())
                if doc["rev"] > KEEP_REVISIONS:
                    self.kv.delete(self._rev_key(doc["rev"] - KEEP_REVISIONS))
                return doc
        raise Conflict(f"routing state {self.prefix}: {attempts} concurrent writers won in a row")
