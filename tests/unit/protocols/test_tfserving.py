"""TF Serving REST compatibility over the same in-process fakes as the OIP tests."""

import pytest
from support.inprocess import chain_call


def test_predict_row_and_columnar_formats():
    r = chain_call("POST", "/v1/models/clf:predict", json={"instances": ["a text", {"text": "b text"}]})
    assert r.status_code == 200, r.text
    assert [p["label"] for p in r.json()["predictions"]] == ["a", "b"]
    r = chain_call("POST", "/v1/models/clf/versions/5:predict", json={"inputs": {"text": ["b only"]}})
    assert r.json()["outputs"]["label"] == ["b"] and r.json()["outputs"]["probabilities"][0]["b"] == 0.75
    r = chain_call("POST", "/v1/models/stc:predict", json={"inputs": ["b story"]})
    assert r.json()["outputs"]["summary"] == ["B STORY"]


def test_status_and_metadata():
    status = chain_call("GET", "/v1/models/clf").json()
    assert status["model_version_status"] == [{"version": "5", "state": "AVAILABLE",
                                               "status": {"error_code": "OK", "error_message": ""}}]
    assert chain_call("GET", "/v1/models/clf/versions/4").json()["model_version_status"][0]["state"] == "UNKNOWN"
    meta = chain_call("GET", "/v1/models/clf/metadata").json()
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["text"]["dtype"] == "DT_STRING" and sig["outputs"]["probabilities"]["dtype"] == "DT_FLOAT"


@pytest.mark.parametrize("body, fragment", [
    ({}, "exactly one of"),
    ({"instances": ["x"], "inputs": ["x"]}, "exactly one of"),
    ({"instances": []}, "non-empty list"),
    ({"instances": [3]}, "instances[0]"),
    ({"inputs": {"other": ["x"]}}, "unexpected inputs ['other']"),
    ({"inputs": {"text": ["x"], "extra": ["y"]}}, "unexpected inputs ['extra']"),
    ({"inputs": {}}, "non-empty list"),
    ({"instances": [""]}, "text is empty"),
])
def test_bad_predict_bodies(body, fragment):
    r = chain_call("POST", "/v1/models/clf:predict", json=body)
    assert r.status_code == 400 and fragment in r.json()["error"]


def test_unknown_model_is_404():
    r = chain_call("POST", "/v1/models/ghost:predict", json={"instances": ["x"]})
    assert r.status_code == 404 and "ghost" in r.json()["error"]
