"""One rule for every bench target (make bench, the generation and variant benches): a target is met only if
its run measured it.

- `ratio(a, b)`: a zero, missing or non-finite figure on either side is no measurement (None), never 0 or inf.
- `judge(...)`: the median of the per-repeat values against the target, with the spread (min-max). If any repeat
  has no value, or the run was not clean (a request failed, an answer was wrong or unchecked, a precondition
  such as the HAProxy front did not hold), the target is "not measured": no value, not met, and the reasons
  listed. Only a clean, complete run can be "met" or "missed".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

GE, LE = ">=", "<="


def finite(x: float | None) -> bool:
    return x is not None and isinstance(x, int | float) and math.isfinite(x)


def ratio(a: float | None, b: float | None) -> float | None:
    """a ÷ b, or None where either is missing, not finite, or b is not positive."""
    if not finite(a) or not finite(b) or b <= 0:
        return None
    return a / b


def judge(tid: str, measure: str, values: Iterable[float | None], op: str, target: float,
          problems: Iterable[str] = ()) -> dict:
    """A targets-table row: `values` one per repeat; `problems` what makes the run unclean (empty: clean)."""
    values = list(values)
    problems = [p for p in problems if p]
    if not values:
        problems.append("no repeat measured it")
    elif not all(finite(v) for v in values):
        problems.append(f"{sum(not finite(v) for v in values)} of {len(values)} repeats have no value")
    row = {"id": tid, "measure": measure, "target": f"{op} {target:g}", "repeats": len(values)}
    if problems:
        return {**row, "value": None, "spread": None, "met": False, "status": "not measured",
                "problems": problems}
    value = statistics.median(values)
    met = value >= target if op == GE else value <= target
    return {**row, "value": round(value, 3), "spread": [round(min(values), 3), round(max(values), 3)],
            "met": met, "status": "met" if met else "missed", "problems": []}


def failures(samples: Iterable[dict], what: str) -> list[str]:
    """The problems of closed-loop samples (load.Sample dicts): failed or wrong answers, or no answers at all."""
    samples = list(samples)
    errors = sum(s.get("errors", 0) for s in samples)
    out = []
    if errors:
        out.append(f"{what}: {errors} requests failed or were answered wrongly")
    if any(s.get("requests", 0) == 0 for s in samples):
        out.append(f"{what}: a window answered no request")
    return out
