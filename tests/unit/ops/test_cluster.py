"""`gateway node`: the environment every node is started with, and the flags passed through to `ray start`."""

from __future__ import annotations

import sys

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.ops import cluster


def test_nodes_get_the_fast_path_and_edge_switches_and_keep_the_callers_environment():
    config = parse_config({"server": {"http_front": "haproxy"}, "models": [{"name": "e", "task": "identity"}]},
                          settings=GatewaySettings())
    env = cluster.node_env(config, base={"PATH": "/bin", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"})
    assert env["PATH"] == "/bin"
    assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "0"  # a switch the caller set stays as set
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"].startswith("serve_app.ops.http_edge")


def test_gateway_node_passes_every_other_flag_to_ray_start(monkeypatch):
    from serve_app import cli

    seen = {}

    def call(cmd, env):
        seen["cmd"], seen["env"] = cmd, env
        return 0

    monkeypatch.setattr(cluster.subprocess, "call", call)
    assert cli.main(["node", "--head", "--port", "6380", "--resources", '{"worker": 4}']) == 0
    assert seen["cmd"][0].endswith("/ray") and seen["cmd"][0].startswith(sys.prefix)
    assert seen["cmd"][1:] == ["start", "--head", "--port", "6380", "--resources", '{"worker": 4}']
    assert seen["env"]["RAY_SERVE_THROUGHPUT_OPTIMIZED"] in ("0", "1")


def test_every_node_uses_token_auth_when_a_token_exists_as_the_head_would(tmp_path):
    config = parse_config({"models": [{"name": "e", "task": "identity"}]}, settings=GatewaySettings())
    assert "RAY_AUTH_MODE" not in cluster.node_env(config, base={}, home=tmp_path)  # no token: Ray's default
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("t" * 32)
    assert cluster.node_env(config, base={}, home=tmp_path)["RAY_AUTH_MODE"] == "token"
    assert cluster.node_env(config, base={"RAY_AUTH_MODE": "disabled"}, home=tmp_path)["RAY_AUTH_MODE"] == "disabled"
    assert cluster.node_env(config, base={"RAY_AUTH_TOKEN": "x" * 32}, home=tmp_path / "no")["RAY_AUTH_MODE"] == "token"
