"""The fast-path switches: set for every entry point unless the environment already decides."""

import socket

import pytest

from serve_app.config import parse_config
from serve_app.config.serve_env import FAST_PATH, use_fast_path


def test_sets_the_switches_in_an_empty_environment():
    env: dict[str, str] = {}
    assert use_fast_path(env) == FAST_PATH
    assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"


def test_an_explicit_choice_in_the_environment_wins():
    env = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"}
    assert use_fast_path(env)["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "0"


def test_the_default_front_is_rays_proxy_and_haproxy_is_asked_for():
    env: dict[str, str] = {}
    use_fast_path(env)
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in env
    assert use_fast_path(env, http_front="haproxy")["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    # Its stats and metrics listeners get ports free now, not the fixed 8404/9101 another process may hold.
    ports = {int(env["RAY_SERVE_HAPROXY_STATS_PORT"]), int(env["RAY_SERVE_HAPROXY_METRICS_PORT"])}
    assert len(ports) == 2 and not ports & {8404, 9101}
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    kept = {"RAY_SERVE_HAPROXY_STATS_PORT": "18404"}
    assert use_fast_path(kept, http_front="haproxy")["RAY_SERVE_HAPROXY_STATS_PORT"] == "18404"


def test_the_front_is_a_checked_config_choice():
    models = [{"name": "noop", "task": "identity"}]
    assert parse_config({"models": models}).server.http_front == "ray"
    assert parse_config({"server": {"http_front": "haproxy"}, "models": models}).server.http_front == "haproxy"
    with pytest.raises(ValueError, match="http_front"):
        parse_config({"server": {"http_front": "nginx"}, "models": models})


def test_every_ray_container_of_the_rayservice_runs_the_fast_path():
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[3] / "k8s"
    docs = [yaml.safe_load((root / "base" / "rayservice.yaml").read_text()),
            yaml.safe_load((root / "overlays" / "gpu" / "gpu-workers.yaml").read_text())]

    def containers(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "containers":
                    yield from value
                else:
                    yield from containers(value)
        elif isinstance(node, list):
            for item in node:
                yield from containers(item)

    found = [c for doc in docs for c in containers(doc)
             if c.get("image") == "inference-gateway" and "serve_app.ops.sidecar" not in c.get("command", [])]
    assert len(found) >= 3  # head, CPU workers, GPU workers
    for c in found:
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        assert {k: env.get(k) for k in FAST_PATH} == FAST_PATH, c["name"]
