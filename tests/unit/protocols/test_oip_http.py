"""OIP v2 REST over in-process fakes, with request bodies built and responses parsed by tritonclient itself."""


import numpy as np
import pytest
import tritonclient.http as triton
from support.inprocess import chain_call


def triton_request(texts, binary=True, outputs=None, parameters=None):
    inp = triton.InferInput("text", [len(texts)], "BYTES")
    inp.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_), binary_data=binary)
    requested = [triton.InferRequestedOutput(o, binary_data=binary) for o in outputs] if outputs else None
    body, json_size = triton.InferenceServerClient.generate_request_body([inp], requested, parameters=parameters)
    headers = {"Inference-Header-Content-Length": str(json_size)} if json_size is not None else {}
    return body, headers


def parse(r):
    length = r.headers.get("inference-header-content-length")
    return triton.InferenceServerClient.parse_response_body(r.content, header_length=int(length) if length else None)


@pytest.mark.parametrize("binary", [True, False])
def test_classify_with_tritonclient_bodies(binary):
    body, headers = triton_request(["a text", "b text"], binary, outputs=["label", "probabilities"])
    r = chain_call("POST", "/v2/models/clf/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    result = parse(r)
    assert result.get_response()["model_version"] == "5"
    assert [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("label")] == ["a", "b"]
    np.testing.assert_allclose(result.as_numpy("probabilities"), [[0.75, 0.25], [0.25, 0.75]])
    assert result.as_numpy("probabilities").dtype == np.float32


def test_all_outputs_binary_by_default_request_parameter_and_pinned_version():
    body, headers = triton_request(["hello"], True)  # no outputs named: tritonclient asks binary_data_output
    r = chain_call("POST", "/v2/models/sum/versions/2/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    assert parse(r).as_numpy("summary")[0] == b"HELLO"
    r = chain_call("POST", "/v2/models/sum/versions/9/infer", content=body, headers=headers)
    assert r.status_code == 404 and "not loaded" in r.json()["error"]


def test_a_pipeline_is_addressable_as_a_model():
    r = chain_call("POST", "/v2/models/stc/infer", json={"inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["b news"]}]})
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    assert outputs["summary"]["data"] == ["B NEWS"] and outputs["label"]["data"] == ["b"]
    meta = chain_call("GET", "/v2/models/stc").json()
    assert meta["platform"] == "inference-gateway/pipeline" and {"summary", "label"} <= {
        o["name"] for o in meta["outputs"]}


def test_health_and_metadata():
    assert chain_call("GET", "/v2/health/live").status_code == 200
    assert chain_call("GET", "/v2/health/ready").status_code == 200
    assert chain_call("GET", "/v2").json()["extensions"] == ["binary_tensor_data", "model_repository", "generate"]
    meta = chain_call("GET", "/v2/models/clf").json()
    assert meta["versions"] == ["5"] and meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert chain_call("GET", "/v2/models/clf/versions/5/ready").status_code == 200
    assert chain_call("GET", "/v2/models/clf/versions/4/ready").status_code == 503
    assert chain_call("GET", "/v2/models/nope").status_code == 404
    r = chain_call("POST", "/v2/repository/models/clf/reload")
    assert r.status_code == 404 and "use load or unload" in r.json()["error"]


@pytest.mark.parametrize("request_json, fragment", [
    ({"inputs": []}, "exactly one BYTES tensor"),
    ({"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]}, "datatype must be BYTES"),
    ({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["x"]}]}, "holds 2 elements"),
    ({"inputs": [{"name": "text", "datatype": "BYTES", "shape": ["a"], "data": ["x"]}]}, "shape must be"),
    ({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [5]}]}, "must be a string"),
    ({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [""]}]}, "text is empty"),
    ({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"]}],
      "outputs": [{"name": "nope"}]}, "not produced"),
    ([1], "JSON object"),
])
def test_bad_inference_requests_are_400_with_an_error_body(request_json, fragment):
    r = chain_call("POST", "/v2/models/clf/infer", json=request_json)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"]


def test_truncated_binary_data_is_refused():
    body, headers = triton_request(["a text"], True)
    r = chain_call("POST", "/v2/models/clf/infer", content=body[:-3], headers=headers)
    assert r.status_code == 400 and "binary" in r.json()["error"]
    r = chain_call("POST", "/v2/models/clf/infer", content=body, headers={"Inference-Header-Content-Length": "999999"})
    assert r.status_code == 400 and "does not fit" in r.json()["error"]


@pytest.mark.parametrize("target", ["clf", "stc"])  # a model and a pipeline
@pytest.mark.parametrize("inputs, fragment", [
    ([{"name": "no_such_input", "datatype": "BYTES", "shape": [1], "data": ["x"]}], "'no_such_input'"),
    ([{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"]},
      {"name": "extra", "datatype": "BYTES", "shape": [1], "data": ["y"]}], "'extra'"),
    ([{"datatype": "BYTES", "shape": [1], "data": ["x"]}], "(no name)"),
    ([{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"]}] * 2, "sent 2 times"),
])
def test_inputs_other_than_text_are_refused_naming_them(target, inputs, fragment):
    """Triton answers 400 naming an unexpected input; reading any tensor as the text hid client bugs."""
    r = chain_call("POST", f"/v2/models/{target}/infer", json={"inputs": inputs})
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"] and f"'{target}'" in r.json()["error"]
    assert "only input is 'text'" in r.json()["error"] or "send it once" in r.json()["error"]


def test_the_repository_index_lists_pipelines_and_their_readiness():
    index = chain_call("POST", "/v2/repository/index").json()
    assert {"name": "stc", "version": "", "state": "READY", "reason": ""} in index
    assert {(e["name"], e["state"]) for e in index} >= {("clf", "READY"), ("sum", "READY")}
    assert chain_call("GET", "/v2/models/stc/ready").status_code == 200
