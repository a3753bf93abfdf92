"""Stock tritonclient.http against the running gateway (real Ray Serve, tiny models), plus OIP schema checks."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from support.serve import REPO, gateway_fixture
from support.tiny_models import TINY_LABELS
from tritonclient.utils import InferenceServerException

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.registry import Registry

CPU = {"num_cpus": 0.1, "num_gpus": 0}
OIP_SPEC = REPO.parent / "shared" / "schemas" / "oip" / "open_inference_rest.yaml"


def gateway_config(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("oip")
    reg = Registry(str(root / "store"), cache_dir=root / "cache")
    reg.register("tiny-clf", tiny_models / "tiny-classifier")
    reg.register("tiny-clf", tiny_models / "tiny-classifier")
    return parse_config({
        "registry": {"uri": str(root / "store"), "cache_dir": str(root / "cache")},
        "models": [
            {"name": "tiny-clf", "task": "classification", "version": "1", "max_length": 32, "resources": CPU},
            {"name": "tiny-sum", "task": "summarization", "source": str(tiny_models / "tiny-summarizer"),
             "max_length": 64, "resources": CPU, "generation": {"max_new_tokens": 4, "max_new_tokens_limit": 8}},
        ],
        "pipelines": [{"name": "stc", "graph": {"type": "chain", "steps": [
            {"node": {"type": "model", "model": "tiny-sum"}},
            {"node": {"type": "model", "model": "tiny-clf"}, "input": "summary"}]}}],
    }, settings=GatewaySettings(models_dir=root))


gateway = gateway_fixture(gateway_config, timeout=None)


def client(url: str) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=120)


def text_input(texts, binary):
    inp = triton.InferInput("text", [len(texts)], "BYTES")
    inp.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_), binary_data=binary)
    return inp


def test_health_and_metadata_through_tritonclient(gateway):
    c = client(gateway)
    assert c.is_server_live() and c.is_server_ready()
    assert c.get_server_metadata()["name"] == "inference-gateway"
    meta = c.get_model_metadata("tiny-clf")
    assert meta["versions"] == ["1"] and meta["inputs"][0]["datatype"] == "BYTES"
    assert c.is_model_ready("tiny-clf") and c.is_model_ready("tiny-clf", "1")
    assert not c.is_model_ready("tiny-clf", "2")


@pytest.mark.parametrize("binary", [True, False])
def test_classify_through_tritonclient(gateway, binary):
    c = client(gateway)
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("label", "probabilities")]
    result = c.infer("tiny-clf", [text_input(["first text", "second text"], binary)], outputs=outputs)
    labels = [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("label")]
    assert all(label in TINY_LABELS for label in labels) and len(labels) == 2
    probs = result.as_numpy("probabilities")
    assert probs.shape == (2, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert result.get_response()["model_version"] == "1"


def test_summarize_and_pipeline_through_tritonclient(gateway):
    c = client(gateway)
    result = c.infer("tiny-sum", [text_input(["Markets rose."], True)], parameters={"max_new_tokens": 3})
    assert result.as_numpy("generated_tokens")[0] <= 3 and result.as_numpy("summary").shape == (1,)
    result = c.infer("stc", [text_input(["Markets rose."], True)])
    assert result.as_numpy("label")[0].decode() in TINY_LABELS


def test_repository_index_load_and_unload(gateway):
    c = client(gateway)
    index = {(e["name"], e["version"]): e["state"] for e in c.get_model_repository_index()}
    assert index[("tiny-clf", "1")] == "READY" and index[("tiny-clf", "2")] == "UNAVAILABLE"
    assert index[("stc", "")] == "READY", "pipelines are listed, as Triton lists ensembles"
    r = httpx.post(f"{gateway}/v2/repository/models/tiny-clf/load", json={"parameters": {"version": "2"}},
                   timeout=120)
    assert r.status_code == 200 and c.is_model_ready("tiny-clf", "2")
    # Unloading deletes a Serve application and waits for it to drain: seconds on a busy machine, past httpx's 5 s.
    r = httpx.post(f"{gateway}/v2/repository/models/tiny-clf/unload", json={"parameters": {"version": "2"}},
                   timeout=120)
    assert r.status_code == 200 and not c.is_model_ready("tiny-clf", "2") and c.is_model_ready("tiny-clf", "1")


def test_unload_then_load_makes_the_model_ready_again(gateway):
    """Unload every version, load without one (tritonclient's load_model): the configured version is back
    with its traffic, so readiness and infer answer; meanwhile the index never said READY."""
    c = client(gateway)
    c.unload_model("tiny-clf")
    assert not c.is_model_ready("tiny-clf") and not c.is_model_ready("stc")
    index = {(e["name"], e["version"]): e["state"] for e in c.get_model_repository_index()}
    assert "READY" not in {index[("tiny-clf", "1")], index[("stc", "")]}
    c.load_model("tiny-clf")
    assert c.is_model_ready("tiny-clf") and c.is_model_ready("stc")
    result = c.infer("tiny-clf", [text_input(["back again"], True)])
    assert result.get_response()["model_version"] == "1"
    index = {(e["name"], e["version"]): e["state"] for e in c.get_model_repository_index()}
    assert index[("tiny-clf", "1")] == "READY" and index[("stc", "")] == "READY"


@pytest.mark.parametrize("target", ["tiny-clf", "stc"])
def test_an_unknown_input_name_is_refused_over_http_and_grpc(gateway, grpc_target, target):
    import tritonclient.grpc as tg

    inp = triton.InferInput("no_such_input", [1], "BYTES")
    inp.set_data_from_numpy(np.array([b"x"], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="unexpected inputs 'no_such_input'") as err:
        client(gateway).infer(target, [inp])
    assert err.value.status() == "400"
    inp = tg.InferInput("no_such_input", [1], "BYTES")
    inp.set_data_from_numpy(np.array([b"x"], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="unexpected inputs 'no_such_input'") as err:
        grpc_client(grpc_target).infer(target, [inp])
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_errors_reach_tritonclient_with_a_clean_message(gateway):
    c = client(gateway)
    with pytest.raises(InferenceServerException, match="model 'ghost' is not served"):
        c.infer("ghost", [text_input(["x"], True)])
    with pytest.raises(InferenceServerException, match="text is empty"):
        c.infer("tiny-clf", [text_input([""], True)])
    with pytest.raises(InferenceServerException, match="served from a folder"):
        c.load_model("tiny-sum")


def schema_validator(name: str):
    import jsonschema
    import yaml

    if not OIP_SPEC.is_file():
        pytest.skip(f"OIP spec not found at {OIP_SPEC}: the shared schemas folder is absent in this checkout")
    doc = yaml.safe_load(Path(OIP_SPEC).read_text())
    return jsonschema.Draft7Validator({"$ref": f"#/components/schemas/{name}", "components": doc["components"]})


def test_rest_responses_validate_against_the_oip_schema(gateway):
    schema_validator("metadata_server_response").validate(httpx.get(f"{gateway}/v2").json())
    schema_validator("metadata_model_response").validate(httpx.get(f"{gateway}/v2/models/tiny-clf").json())
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}]}
    r = httpx.post(f"{gateway}/v2/models/tiny-clf/infer", json=body, timeout=60)
    schema_validator("inference_response").validate(r.json())
    bad = httpx.post(f"{gateway}/v2/models/tiny-clf/infer", json={"inputs": []}, timeout=60)
    assert bad.status_code == 400
    schema_validator("inference_error_response").validate(bad.json())


# -- gRPC: stock tritonclient.grpc through Ray Serve's gRPC proxy ------------------------------------------------

def grpc_client(target: str):
    import tritonclient.grpc as tg

    return tg.InferenceServerClient(target)


def grpc_text_input(texts):
    import tritonclient.grpc as tg

    inp = tg.InferInput("text", [len(texts)], "BYTES")
    inp.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
    return inp


def test_grpc_health_metadata_and_classify(gateway, grpc_target):
    import tritonclient.grpc as tg

    c = grpc_client(grpc_target)
    assert c.is_server_live() and c.is_server_ready()
    assert c.get_server_metadata().name == "inference-gateway"
    assert list(c.get_model_metadata("tiny-clf").versions) == ["1"]
    assert c.is_model_ready("tiny-clf") and not c.is_model_ready("tiny-clf", "7")
    outputs = [tg.InferRequestedOutput("label"), tg.InferRequestedOutput("probabilities")]
    result = c.infer("tiny-clf", [grpc_text_input(["one", "two"])], outputs=outputs)
    assert result.as_numpy("label").shape == (2,)
    assert all(x.decode() in TINY_LABELS for x in result.as_numpy("label"))
    np.testing.assert_allclose(result.as_numpy("probabilities").sum(axis=1), 1.0, rtol=1e-5)
    assert result.get_response().model_version == "1"


def test_grpc_summarize_pipeline_and_repository(gateway, grpc_target):
    c = grpc_client(grpc_target)
    result = c.infer("tiny-sum", [grpc_text_input(["Markets rose."])], parameters={"max_new_tokens": 2})
    assert result.as_numpy("generated_tokens")[0] <= 2
    assert result.as_numpy("label") is None
    assert c.infer("stc", [grpc_text_input(["Rates fell."])]).as_numpy("label")[0].decode() in TINY_LABELS
    index = {(m.name, m.version): m.state for m in c.get_model_repository_index().models}
    assert index[("tiny-clf", "1")] == "READY"


def test_grpc_errors_have_the_mapped_status_and_a_clean_message(gateway, grpc_target):
    from tritonclient.utils import InferenceServerException

    c = grpc_client(grpc_target)
    cases = [
        (lambda: c.infer("ghost", [grpc_text_input(["x"])]), "StatusCode.NOT_FOUND", "not served"),
        (lambda: c.infer("tiny-clf", [grpc_text_input([""])]), "StatusCode.INVALID_ARGUMENT", "text is empty"),
        (lambda: c.infer("tiny-clf", [grpc_text_input(["x"])], model_version="9"), "StatusCode.NOT_FOUND",
         "not loaded"),
        (lambda: c.get_model_config("tiny-clf"), "StatusCode.UNIMPLEMENTED", "not implemented"),
        (lambda: c.load_model("tiny-sum"), "StatusCode.INVALID_ARGUMENT", "served from a folder"),
    ]
    for call, status, fragment in cases:
        with pytest.raises(InferenceServerException) as err:
            call()
        assert err.value.status() == status, (status, str(err.value))
        assert fragment in err.value.message() and "Traceback" not in err.value.message()
