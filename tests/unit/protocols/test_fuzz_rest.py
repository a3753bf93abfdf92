"""Property-based fuzz of the REST API (simple JSON API, OIP v2, TF Serving, admin) with hypothesis.

Runs against the FastAPI app in-process over fake models, so well over 1000 generated requests take seconds.
Every answer must be below 500, and every 4xx must be a JSON object with an "error" message that carries no
traceback and no exception class name. Bodies mix valid-looking structures with wrong types and shapes,
invalid UTF-8, malformed and truncated JSON, random bytes, odd headers and oversized payloads.
"""

from __future__ import annotations

import json
from collections import Counter
from urllib.parse import quote

import hypothesis.strategies as st
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from support.fakes import FakeManager, chain_dataplane
from support.fuzz_strategies import (
    FUZZ,
    check,
    encoded,
    good_models,
    headers,
    json_values,
    names,
    oip_bodies,
    simple_bodies,
    tallied,
    tf_bodies,
)
from support.servers import FakeResponse

from serve_app.protocols.http_app import create_app

MAX_BODY = 4096


@pytest.fixture(scope="module")
def client():
    limits = {"max_texts": 8, "max_text_chars": 200, "max_body_bytes": MAX_BODY, "request_timeout_s": 5,
              "max_request_timeout_s": 10}
    dp = chain_dataplane(config={"server": {"limits": limits}},
                         manager=FakeManager(refuse="the fuzzed models are served from folders"))
    with TestClient(create_app(lambda: dp), raise_server_exceptions=False) as c:
        yield c


class Searches:
    """Runs each hypothesis search once per module and keeps the statuses its answers had, by kind: the property
    test of a kind and test_case_count ask for the same run, in any order, and either may run alone."""

    def __init__(self, client):
        self.client, self.statuses = client, {}

    def run(self, kind, search) -> Counter:
        if kind not in self.statuses:
            with tallied() as tally:
                search(self.client)
            self.statuses[kind] = tally.get(kind, Counter())
        return self.statuses[kind]


@pytest.fixture(scope="module")
def searches(client):
    return Searches(client)


# -- properties -------------------------------------------------------------------------------------------------
@FUZZ
@given(path=st.sampled_from(["/v1/classify", "/v1/summarize", "/v1/pipelines/stc", "/v1/pipelines/ghost"]),
       raw=encoded(simple_bodies()), hdrs=headers)
def simple_api(client, path, raw, hdrs):
    check(client.post(path, content=raw, headers=hdrs), "simple")


@FUZZ
@given(name=st.one_of(good_models, names), version=st.one_of(st.none(), st.sampled_from(["5", "2", "9", "x"])),
       raw=encoded(oip_bodies()),
       tail=st.binary(max_size=64), hdrs=headers)
def oip_infer(client, name, version, raw, tail, hdrs):
    path = f"/v2/models/{quote(name, safe='')}" + (f"/versions/{version}" if version else "") + "/infer"
    check(client.post(path, content=raw + tail, headers=hdrs), "oip")


@FUZZ
@given(name=st.one_of(good_models, names), raw=encoded(tf_bodies()), hdrs=headers)
def tf_serving_predict(client, name, raw, hdrs):
    check(client.post(f"/v1/models/{quote(name, safe='')}:predict", content=raw, headers=hdrs), "tfserving")


@settings(FUZZ, max_examples=250)
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
       path=st.one_of(
           st.sampled_from(["/v1/models", "/v1/models/clf", "/v2", "/v2/models/clf", "/v2/models/clf/ready",
                            "/v2/models/ghost/ready", "/v2/repository/index", "/v1/pipelines", "/v1/pipelines/stc",
                            "/v1/admin/models/clf/traffic", "/v1/admin/models/clf/versions/3/load",
                            "/v2/repository/models/clf/load", "/v2/repository/models/clf/frobnicate",
                            "/v1/models/clf/metadata", "/v1/models/clf/versions/5", "/healthz", "/readyz"]),
           st.lists(st.text(min_size=1, max_size=10).map(lambda s: quote(s, safe="")), min_size=1, max_size=5)
           .map(lambda parts: "/" + "/".join(parts))),
       raw=encoded(json_values), hdrs=headers)
def any_route_and_method(client, method, path, raw, hdrs):
    check(client.request(method, path, content=raw, headers=hdrs), "routes")


SEARCHES = {"simple": simple_api, "oip": oip_infer, "tfserving": tf_serving_predict, "routes": any_route_and_method}


def test_simple_api(searches):
    assert searches.run("simple", simple_api)


def test_oip_infer(searches):
    assert searches.run("oip", oip_infer)


def test_tf_serving_predict(searches):
    assert searches.run("tfserving", tf_serving_predict)


def test_any_route_and_method(searches):
    assert searches.run("routes", any_route_and_method)


@pytest.mark.parametrize("path", ["/v1/classify", "/v1/pipelines/stc", "/v2/models/clf/infer",
                                  "/v1/models/clf:predict", "/v1/admin/models/clf/traffic"])
@pytest.mark.parametrize("declared", [True, False])
def test_huge_bodies_are_413(client, path, declared):
    raw = json.dumps({"texts": ["x" * 100] * 100}).encode()
    assert len(raw) > MAX_BODY
    method = "PUT" if "traffic" in path else "POST"
    hdrs = {} if declared else {"content-length": "100"}
    if not declared:  # a client that lies about the length: the server still counts what arrives
        r = client.request(method, path, content=iter([raw]), headers={"transfer-encoding": "chunked"})
    else:
        r = client.request(method, path, content=raw, headers=hdrs)
    check(r, "huge")
    assert r.status_code == 413 and r.json()["kind"] == "payload_too_large", r.text


def test_case_count(searches):
    """The generated cases add up to the issue's 1000, and reach the models, not only the validators."""
    statuses = {kind: searches.run(kind, search) for kind, search in SEARCHES.items()}
    cases = {kind: sum(counts.values()) for kind, counts in statuses.items()}
    print("fuzz cases:", cases, "total", sum(cases.values()), {k: dict(v) for k, v in statuses.items()})
    assert sum(cases.values()) >= 1000, cases
    for kind in ("simple", "oip", "tfserving"):
        assert statuses[kind][200] >= 10 and sum(n for c, n in statuses[kind].items() if c >= 400) >= 10, statuses


@pytest.mark.parametrize("text", ['{"error": "KeyError: texts"}', '{"error": "Traceback (most recent call last)"}',
                                  '{"error": "<class \'dict\'>"}', '{"detail": "no error field"}'])
def test_the_oracle_rejects_leaky_error_bodies(text):
    with pytest.raises(AssertionError):
        check(FakeResponse(400, text), "oracle")
