"""What a request says about how it wants to be served, beside its inputs, in any protocol:

    X-Latency-Budget-Ms: 150   or the parameter  latency_budget_ms   (selection: answer within this budget)
    X-Min-Accuracy: 90         or the parameter  min_accuracy        (selection: a variant at least this accurate)
    Cache-Control: no-cache                                          (answer without the response cache)

Parameters win over headers (gRPC: metadata). Values are checked by serve_app/dataplane/selection.py, so a
malformed one is a 400 / INVALID_ARGUMENT naming the field in every protocol alike.
"""

from __future__ import annotations

from collections.abc import Mapping

from serve_app.dataplane.selection import ACCURACY_PARAM, BUDGET_PARAM

HEADERS = {BUDGET_PARAM: "x-latency-budget-ms", ACCURACY_PARAM: "x-min-accuracy"}


def request_hints(params: Mapping, headers: Mapping[str, str]) -> tuple[dict, bool]:
    """(needs for selection, fresh: skip the response cache) from a request's parameters and headers."""
    needs = {name: params[name] for name in HEADERS if params.get(name) is not None}
    for name, header in HEADERS.items():
        if name not in needs and headers.get(header) is not None:
            needs[name] = headers[header]
    fresh = "no-cache" in (headers.get("cache-control") or "").lower()
    return needs, fresh
