"""The README's admin walkthrough, line by line as a shell runs it, against a real gateway (real Ray Serve, the
real `gateway` CLI and curl), on a fresh registry like `make models` leaves: one classifier version, `stable`.

Only the address (a free loopback port), the CLI's path and the model files (a tiny classifier) differ from
what a reader runs after `make run`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.serve import REPO, deployed

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.registry import Registry

MARKER = "<!-- walkthrough -->"


def walkthrough_lines() -> list[str]:
    text = (REPO / "README.md").read_text()
    assert MARKER in text, "the README lost its walkthrough marker"
    block = text.split(MARKER, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture(scope="module")
def fresh_install(serve_session, tiny_models, tmp_path_factory):
    work = tmp_path_factory.mktemp("walkthrough")
    (work / "models").mkdir()
    shutil.copytree(tiny_models / "tiny-classifier", work / "models" / "classifier")
    reg = Registry(str(work / "registry"), cache_dir=work / "cache")
    reg.register("classifier", work / "models" / "classifier")
    reg.set_alias("classifier", "stable", "1")
    config = parse_config({
        "registry": {"uri": str(work / "registry"), "cache_dir": str(work / "cache")},
        "models": [{"name": "classifier", "task": "classification", "version": "stable", "max_length": 32,
                    "resources": {"num_cpus": 0.1, "num_gpus": 0}}],
    }, settings=GatewaySettings(models_dir=work / "models"))
    with deployed(config):
        yield work, serve_session


def test_the_readme_walkthrough_runs_in_order_on_a_fresh_install(fresh_install):
    work, url = fresh_install
    if shutil.which("curl") is None:
        pytest.fail("curl is needed to run the README's examples")
    cli = str(Path(sys.executable).parent / "gateway")
    env = {**os.environ, "GATEWAY_REGISTRY_URI": str(work / "registry"), "PYTHONPATH": str(REPO)}
    outputs = []
    for line in walkthrough_lines():
        command = line.replace("http://127.0.0.1:8000", url).replace(".venv/bin/gateway", cli)
        done = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, f"README line failed: {line}\n{done.stdout}\n{done.stderr}"
        outputs.append((line, done.stdout))
    # The split the walkthrough set (stable 90, canary 10: version 1 and the new version 2), then stable alone.
    listed = next(json.loads(out) for line, out in outputs
                  if line.split("#")[0].strip().endswith("/v1/models/classifier"))
    assert {v["version"]: v["traffic_share"] for v in listed["versions"]} == {"1": 0.9, "2": 0.1}
    answer = json.loads(outputs[-1][1])
    assert answer["version"] == "1" and len(answer["results"]) == 1
    assert Registry(str(work / "registry")).aliases("classifier") == {"stable": 1, "canary": 2}
