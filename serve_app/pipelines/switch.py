"""Switch conditions, evaluated per text: where a condition's value comes from, and whether its test holds."""

from __future__ import annotations

from serve_app.pipelines.spec import Condition


def value_of(cond: Condition, record: dict, context: dict) -> object:
    """The value a condition tests: a field of the record, a request parameter, or a header (names of headers
    compare case-insensitively); None when absent."""
    kind, name = cond.source
    if kind == "field":
        return record.get(name)
    if kind == "param":
        return (context.get("params") or {}).get(name)
    return (context.get("headers") or {}).get(name.lower())


def _number(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def _text(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _same(value: object, wanted: object) -> bool:
    """Numbers compare as numbers (a header "2" equals 2), everything else as text (true equals "true")."""
    a, b = _number(value), _number(wanted)
    if a is not None and b is not None and not isinstance(wanted, bool):
        return a == b
    return _text(value) == _text(wanted)


def holds(cond: Condition, record: dict, context: dict) -> bool:
    value = value_of(cond, record, context)
    if value is None:
        return False
    if cond.equals is not None:
        return _same(value, cond.equals)
    if cond.one_of is not None:
        return any(_same(value, w) for w in cond.one_of)
    number = _number(value)
    if number is None:
        return False
    return number > cond.above if cond.above is not None else number < cond.below


def route(cases: dict, has_default: bool, records: list[dict], context: dict) -> dict[str | None, list[int]]:
    """Indexes of the records per case name (first case that holds), "default", or None (no case, no default)."""
    out: dict[str | None, list[int]] = {}
    for i, record in enumerate(records):
        name = next((n for n, c in cases.items() if holds(c.when, record, context)), None)
        out.setdefault(name if name is not None else ("default" if has_default else None), []).append(i)
    return out
