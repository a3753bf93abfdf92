"""The one percentile every latency figure uses (bench, soak, stream job, variant bench): nearest rank, so a
reported p99 is a latency some request actually had. Pure Python: the Flink job imports it too."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float | None:
    """The `q`-th percentile (0-100) of `values` by nearest rank; None when there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0-100")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
