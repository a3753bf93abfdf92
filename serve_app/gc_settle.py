"""The ingress' garbage collector, once warm: collect and freeze what exists, then collect the young less often.

Ray Serve does this for its own proxy (ray/serve/_private/proxy.py, `_configure_gc_options`: `gc.collect(2)`,
`gc.freeze()`, `gc.set_threshold(RAY_SERVE_PROXY_GC_THRESHOLD)`), and freezes a replica once its constructor
has run (RAY_SERVE_FREEZE_GC_ON_STARTUP). The gateway's ingress is the proxy in front of every model, but most
of what it keeps for life is made after its constructor: modules imported on first use, route tables, handles,
validators. Measured here (T3 of `make bench`, 4x overload behind HAProxy): 150-210 thousand such objects, so each
full collection scanned them all and held the ingress' event loop for 85-150 ms, 2-3 times per 10-s window; those
pauses were the high class's slowest calls (the model's answer waiting, done, in the ingress' socket).

Collecting the young generation less often (10,000 new objects instead of 700) means fewer of the requests in
flight at that moment outlive a collection and reach the older generations, so those fill (and are scanned)
less often. Warm = the interpreter has run `WARM_COLLECTIONS` young collections since start (traffic, of any
protocol), checked by the ingress every few seconds: the first requests import and build what they need first.

Pure Python, no Ray: `GcSettle(gc).poll()`.
"""

from __future__ import annotations

import gc as _gc
import logging
import time

log = logging.getLogger(__name__)

WARM_COLLECTIONS = 300  # young collections: ~200 thousand allocations at Python's default threshold (700)
YOUNG_THRESHOLD = 10_000  # allocations between young collections once warm (Python's default: 700)
POLL_INTERVAL_S = 5.0


class GcSettle:
    def __init__(self, collector=_gc, warm_collections: int = WARM_COLLECTIONS,
                 young_threshold: int = YOUNG_THRESHOLD):
        self.gc = collector
        self.warm_collections = warm_collections
        self.young_threshold = young_threshold
        self.start = self._young_collections()
        self.settled = False

    def _young_collections(self) -> int:
        return self.gc.get_stats()[0]["collections"]

    def poll(self) -> bool:
        """Settle once the process is warm; True when this call settled it."""
        if self.settled or self._young_collections() - self.start < self.warm_collections:
            return False
        started = time.perf_counter()
        self.gc.collect()
        self.gc.freeze()
        young, *older = self.gc.get_threshold()
        self.gc.set_threshold(max(young, self.young_threshold), *older)
        self.settled = True
        log.info("garbage collector settled in %.0f ms: %d objects frozen, young threshold %d",
                 (time.perf_counter() - started) * 1000, self.gc.get_freeze_count(), self.young_threshold)
        return True
