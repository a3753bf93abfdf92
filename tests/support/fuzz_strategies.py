"""Hypothesis strategies for fuzzing the REST API, and the oracle every answer must pass; shared by the
in-process fuzz (tests/unit/test_fuzz_rest.py) and the smaller one over real HTTP on Ray Serve."""

from __future__ import annotations

import json
import re
from collections import Counter
from contextlib import contextmanager

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings

LEAKS = re.compile(r"Traceback|File \"|\b[A-Z][A-Za-z]*(Error|Exception)\b|<class |0x[0-9a-f]{6,}")
_TALLIES: list[dict[str, Counter]] = []


@contextmanager
def tallied():
    """Counts the answers `check` sees inside the block, by kind and status: {kind: Counter({status: n})}."""
    tally: dict[str, Counter] = {}
    _TALLIES.append(tally)
    try:
        yield tally
    finally:
        _TALLIES.remove(tally)


def check(response, kind: str) -> None:
    for tally in _TALLIES:
        tally.setdefault(kind, Counter())[response.status_code] += 1
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
        assert not LEAKS.search(response.text), response.text[:500]


# -- strategies -------------------------------------------------------------------------------------------------
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                    st.text(max_size=30))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                            st.dictionaries(st.text(max_size=10), inner, max_size=5)),
                           max_leaves=20)
texts = st.one_of(st.text(max_size=250), st.sampled_from(["", " ", "b", "x" * 201, "\x00", "\ud7ff"]))
names = st.one_of(st.sampled_from(["clf", "sum", "stc", "clf@5", "clf@9", "sum@2", "ghost", ""]), st.text(max_size=12))
text_lists = st.one_of(st.lists(texts, max_size=10), json_values)


good_texts = st.lists(st.text(alphabet=st.characters(categories=["L", "N", "Zs", "P"]), min_size=1, max_size=40)
                     .filter(str.strip), min_size=1, max_size=8)
good_models = st.sampled_from(["clf", "sum", "clf@5"])


def maybe(value_strategy):
    """A field that is absent, well-typed, or anything at all."""
    return st.one_of(st.just(...), value_strategy, json_values)


@st.composite
def simple_bodies(draw):
    body = {"texts": draw(text_lists)}
    for key, strategy in [("model", names), ("max_new_tokens", st.integers(-5, 300)), ("trace", st.booleans()),
                          (draw(st.text(max_size=8)), json_values)]:
        value = draw(maybe(strategy))
        if value is not ...:
            body[key] = value
    good = st.fixed_dictionaries({"texts": good_texts}, optional={"model": good_models})
    return draw(st.one_of(good, good, st.just(body), json_values))


@st.composite
def oip_bodies(draw):
    # Mostly the one input name the models declare: another name is refused (400) before anything else is read.
    tensor = {"name": draw(st.one_of(st.just("text"), st.just("text"), st.just("text"), st.text(max_size=8))),
              "datatype": draw(st.one_of(st.sampled_from(["BYTES", "FP32", "INT64", "BOOL", "UINT8"]),
                                         st.text(max_size=6))),
              "shape": draw(st.one_of(st.lists(st.integers(-3, 12), max_size=3), json_values)),
              "data": draw(st.one_of(st.lists(texts, max_size=10), json_values))}
    if draw(st.booleans()):
        tensor["parameters"] = draw(st.one_of(st.fixed_dictionaries({"binary_data_size": st.integers(-5, 100)}),
                                              json_values))
    body = {"inputs": draw(st.one_of(st.lists(st.just(tensor), min_size=1, max_size=2), json_values))}
    for key, strategy in [("parameters", st.fixed_dictionaries({"max_new_tokens": st.integers(-5, 300),
                                                                "binary_data_output": st.booleans()})),
                          ("outputs", st.lists(st.fixed_dictionaries({"name": st.text(max_size=12)}), max_size=3)),
                          ("id", st.text(max_size=8))]:
        value = draw(maybe(strategy))
        if value is not ...:
            body[key] = value
    good = good_texts.map(lambda ts: {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(ts)],
                                                  "data": ts}]})
    return draw(st.one_of(good, good, st.just(body), json_values))


@st.composite
def tf_bodies(draw):
    rows = st.lists(st.one_of(texts, st.fixed_dictionaries({"text": texts}), json_values), max_size=10)
    body = draw(st.sampled_from([{}, {"instances": 0}, {"inputs": 0}, {"instances": 0, "inputs": 0}]))
    body = {k: draw(st.one_of(rows, st.fixed_dictionaries({"text": rows}), json_values)) for k in body}
    good = st.one_of(good_texts.map(lambda ts: {"instances": ts}), good_texts.map(lambda ts: {"inputs": {"text": ts}}))
    return draw(st.one_of(good, good, st.just(body), json_values))


@st.composite
def encoded(draw, bodies):
    """JSON bytes, sometimes damaged: truncated, invalid UTF-8 spliced in, or random bytes instead."""
    raw = json.dumps(draw(bodies)).encode()
    damage = draw(st.sampled_from(["none"] * 6 + ["truncate", "utf8", "bytes", "nul", "nan"]))
    if damage == "truncate" and raw:
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    elif damage == "utf8":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"])) + raw[at:]
    elif damage == "bytes":
        raw = draw(st.binary(max_size=300))
    elif damage == "nul":
        raw = raw.replace(b'"', b'"\x00', 1)
    elif damage == "nan":
        raw = raw.replace(b"0", b"NaN", 1).replace(b"1", b"Infinity", 1)
    return raw


headers = st.fixed_dictionaries({}, optional={
    "content-type": st.sampled_from(["application/json", "text/plain", "application/octet-stream", "",
                                     "a/b; x=\xe9".encode("latin-1")]),
    "x-request-timeout": st.one_of(st.sampled_from(["1", "0.5", "-1", "0", "nan", "1e309", ""]),
                                   # A field value has no leading/trailing whitespace on the wire (RFC 9110 5.5):
                                   # h11 refuses to send ' ', so strip rather than fail inside the client.
                                   st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126),
                                           max_size=8).map(str.strip)),
    "inference-header-content-length": st.one_of(st.integers(-10, 5000).map(str), st.sampled_from(["x", ""])),
})

FUZZ = settings(max_examples=270, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
