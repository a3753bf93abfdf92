"""Fusion of classifier outputs from several branches, per text.

Every method works on probability tables {label: p} over one shared label set (branches whose labels differ
must be mapped onto it first, see `map_labels`):

- weighted_average / mean: the (weighted) arithmetic mean of the tables; sums to 1 when the inputs do.
- max / min: the per-label max (min) over branches, renormalised to sum to 1.
- vote: each branch votes for its top label; ties go to the label with the highest mean probability, then
  to the alphabetically first label, so the result never depends on branch order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

METHODS = ("weighted_average", "mean", "max", "min", "vote")


def normalise_weights(weights: Mapping[str, float], branches: Sequence[str]) -> dict[str, float]:
    missing = sorted(set(branches) - set(weights))
    if missing:
        raise ValueError(f"no weight for branches {missing}")
    extra = sorted(set(weights) - set(branches))
    if extra:
        raise ValueError(f"weights name unknown branches {extra}")
    if any(w < 0 for w in weights.values()):
        raise ValueError("weights must be >= 0")
    total = sum(weights[b] for b in branches)
    if total <= 0:
        raise ValueError("weights must have a positive sum")
    return {b: weights[b] / total for b in branches}


def map_labels(probs: Mapping[str, float], mapping: Mapping[str, str] | None) -> dict[str, float]:
    """Rename labels (several may map onto one: their probabilities add up)."""
    if not mapping:
        return dict(probs)
    out: dict[str, float] = {}
    for label, p in probs.items():
        target = mapping.get(label, label)
        out[target] = out.get(target, 0.0) + p
    return out


def _labels(tables: Sequence[Mapping[str, float]]) -> list[str]:
    labels = sorted(tables[0])
    for t in tables[1:]:
        if sorted(t) != labels:
            raise ValueError(f"label sets differ: {labels} vs {sorted(t)}; map them with label_map")
    return labels


def _renormalise(table: dict[str, float]) -> dict[str, float]:
    total = sum(table.values())
    return {k: (v / total if total > 0 else 1.0 / len(table)) for k, v in table.items()}


def fuse(tables: Mapping[str, Mapping[str, float]], method: str,
         weights: Mapping[str, float] | None = None) -> dict:
    """Fuse per-branch probability tables for one text -> {label, score, probabilities, votes?}."""
    if not tables:
        raise ValueError("nothing to fuse")
    branches = sorted(tables)
    labels = _labels([tables[b] for b in branches])
    if method in ("weighted_average", "mean"):
        w = normalise_weights(weights, branches) if method == "weighted_average" and weights else \
            {b: 1.0 / len(branches) for b in branches}
        probs = {label: sum(w[b] * tables[b][label] for b in branches) for label in labels}
    elif method in ("max", "min"):
        pick = max if method == "max" else min
        probs = _renormalise({label: pick(tables[b][label] for b in branches) for label in labels})
    elif method == "vote":
        votes = Counter(max(labels, key=lambda label, b=b: (tables[b][label], -labels.index(label)))
                        for b in branches)
        mean = {label: sum(tables[b][label] for b in branches) / len(branches) for label in labels}
        best = max(labels, key=lambda label: (votes[label], mean[label], -labels.index(label)))
        probs = {label: votes[label] / len(branches) for label in labels}
        return {"label": best, "score": probs[best], "probabilities": probs, "votes": dict(votes)}
    else:
        raise ValueError(f"unknown fusion method {method!r}; use one of {', '.join(METHODS)}")
    best = max(labels, key=lambda label: (probs[label], -labels.index(label)))
    return {"label": best, "score": probs[best], "probabilities": probs}
