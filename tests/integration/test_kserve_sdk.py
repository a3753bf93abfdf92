"""KServe's Python SDK (`InferenceRESTClient`, `InferenceGRPCClient`), a second stock OIP client beside
tritonclient, against the running gateway (real Ray Serve, tiny models).

The SDK pins psutil < 6, grpcio-tools and protobuf >= 6.33.5, which clash with the gateway's venv, so it lives in
`.venv-kserve` (`make kserve-venv`, made here when absent) and the calls run there as a subprocess
(`kserve_client.py`); this test deploys the gateway and checks what the client saw.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.serve import REPO, gateway_fixture
from support.tiny_models import TINY_LABELS

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.registry import Registry

KSERVE_PYTHON = REPO / ".venv-kserve" / "bin" / "python"
CPU = {"num_cpus": 0.1, "num_gpus": 0}


@pytest.fixture(scope="module")
def kserve_python() -> Path:
    if not (KSERVE_PYTHON.parent.parent / ".installed").is_file():
        subprocess.run(["make", "kserve-venv", f"PYTHON={sys.executable}"], cwd=REPO, check=True, timeout=900)
    return KSERVE_PYTHON


def gateway_config(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("kserve")
    Registry(str(root / "store"), cache_dir=root / "cache").register("ks-clf", tiny_models / "tiny-classifier")
    return parse_config({
        "registry": {"uri": str(root / "store"), "cache_dir": str(root / "cache")},
        "models": [{"name": "ks-clf", "task": "classification", "version": "1", "max_length": 32, "resources": CPU},
                   {"name": "ks-echo", "task": "identity", "resources": {"num_cpus": 0.05, "num_gpus": 0}}],
        "pipelines": [{"name": "ks-pipe", "graph": {"type": "chain", "steps": [
            {"node": {"type": "model", "model": "ks-echo"}},
            {"node": {"type": "model", "model": "ks-clf"}, "input": "text"}]}}],
    }, settings=GatewaySettings(models_dir=root))


gateway = gateway_fixture(gateway_config, timeout=None)


def test_kserve_sdk_rest_and_grpc(gateway, grpc_target, kserve_python):
    done = subprocess.run([str(kserve_python), str(Path(__file__).with_name("kserve_client.py")), gateway,
                           grpc_target, "ks-clf", "ks-pipe"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["rest_server_ready"] and seen["rest_model_ready"]
    assert seen["grpc_server_ready"] and seen["grpc_model_ready"]
    for key in ("rest_labels_binary_False", "rest_labels_binary_True", "grpc_labels"):
        assert len(seen[key]) == 2 and set(seen[key]) <= set(TINY_LABELS), (key, seen[key])
    assert seen["rest_probabilities_shape_binary_False"] == [2, len(TINY_LABELS)]
    assert seen["rest_probabilities_shape_binary_True"] == [2, len(TINY_LABELS)]
    assert seen["grpc_model_version"] == "1"  # the SDK's REST parser drops model_version (InferResponse.from_bytes)
    assert set(seen["rest_pipeline_labels"] + seen["grpc_pipeline_labels"]) <= set(TINY_LABELS)
    assert seen["rest_bad_input"][0] == 400 and "no_such_input" in seen["rest_bad_input"][1]
    assert seen["grpc_bad_input"][0] == "INVALID_ARGUMENT" and "no_such_input" in seen["grpc_bad_input"][1]
