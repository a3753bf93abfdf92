"""Session-wide fixtures: tests are marked by folder; Ray and Serve start once per session, only if needed."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import pytest
from support.serve import CACHE, REPO, SERVE_ADDRESSES, free_port

from serve_app.config.serve_env import use_fast_path
from serve_app.config.server import Tracing
from serve_app.tracing import SPAN_DIR_ENV, ray_tracing_env

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from a model hub, ever
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The tests run Ray Serve in the mode `make run` uses (throughput-optimized, direct ingress); Ray
# reads these when ray.serve is first imported, which may happen while test modules are collected.
use_fast_path()
# Ray Serve's tracing on, as `gateway run` switches it on when spans are exported: every Serve process appends its
# spans to one folder (tests/integration/test_traces_ray.py reads the trees back). Sampling 0: only requests whose
# client sent a sampled `traceparent` are traced, so other tests pay nothing for it.
os.environ.setdefault(SPAN_DIR_ENV, tempfile.mkdtemp(prefix="gateway-spans-"))
ray_tracing_env(Tracing(sample_ratio=0.0))


def pytest_collection_modifyitems(config, items):
    tests = Path(__file__).resolve().parent
    for item in items:
        level = Path(item.fspath).resolve().relative_to(tests).parts[0]  # unit/<package>/test_x.py -> unit
        if level in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, level))
    # Tests that start a Ray of their own run first, before any test starts the session's (one Ray at a time).
    items.sort(key=lambda item: item.get_closest_marker("own_ray") is None)


@pytest.fixture(scope="session")
def smollm2_tokenizer_dir() -> Path:
    """SmolLM2's tokenizer: from the prepared summarizer if present, else extracted from the GGUF once."""
    prepared = REPO / "models" / "summarizer"
    if (prepared / "tokenizer.json").is_file():
        return prepared
    cached = CACHE / "smollm2-tokenizer"
    if not (cached / "tokenizer.json").is_file():
        from serve_app.builders.prepare import export_smollm2_tokenizer

        cached.mkdir(parents=True, exist_ok=True)
        export_smollm2_tokenizer(cached)
    return cached


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, smollm2_tokenizer_dir) -> Path:
    from support.tiny_models import build_tiny_classifier, build_tiny_gguf, build_tiny_summarizer

    root = tmp_path_factory.mktemp("tiny-models")
    build_tiny_classifier(root / "tiny-classifier")
    build_tiny_summarizer(root / "tiny-summarizer", smollm2_tokenizer_dir)
    # Untied embeddings: varied text instead of one repeated token (streaming and stop-string tests need it).
    build_tiny_summarizer(root / "tiny-chatty", smollm2_tokenizer_dir, tie_word_embeddings=False)
    # The same plumbing on llama.cpp: a GGUF file with SmolLM2's vocabulary and random weights.
    build_tiny_gguf(root / "tiny-gguf", smollm2_tokenizer_dir)
    if importlib.util.find_spec("vllm") is not None:  # vLLM's CPU attention needs heads of 32 or more
        build_tiny_summarizer(root / "tiny-vllm", smollm2_tokenizer_dir, tie_word_embeddings=False, hidden_size=128)
    return root


@pytest.fixture(scope="session")
def grpc_target(serve_session) -> str:
    """host:port of Ray Serve's gRPC proxy (OIP service) in this session."""
    return SERVE_ADDRESSES["grpc"]


@pytest.fixture(scope="session")
def serve_session():
    """One local Ray (never a leftover cluster) and one Serve instance on a free loopback port."""
    import ray
    from ray import serve

    from deployments.assemble import start_serve
    from serve_app.config import parse_config

    port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    # Metrics exported every 2 s (Ray's default: 10 s): metric tests wait less, and a gauge that is not
    # re-published leaves the exporter after 4 s (two intervals), so test_metrics_ray sees it fail quickly.
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="error",
             _metrics_export_port=metrics_port, _system_config={"metrics_report_interval_ms": 2000})
    SERVE_ADDRESSES["metrics"] = f"http://127.0.0.1:{metrics_port}/metrics"
    # Any config will do: only its server section is read, and the ports are given here.
    start_serve(parse_config({"models": [{"name": "x", "task": "identity"}]}), "127.0.0.1", port, grpc_port)
    SERVE_ADDRESSES["grpc"] = f"127.0.0.1:{grpc_port}"
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()
