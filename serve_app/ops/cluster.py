"""`gateway node`: start a Ray node the gateway can run on, as `ray start` does, with the gateway's environment.

Ray Serve reads its switches (throughput mode, the HTTP edge's limits, HAProxy) from the environment of each
process when it imports `ray.serve`, and a node's processes inherit the environment of the `ray start` that began
it: so every node is started with the same switches that `gateway run` sets for a Ray it starts itself (Ray's
docs: set RAY_SERVE_* variables on every node before starting Ray; the RayService pods set them in their spec).

    gateway node --head --port 6380                                   # a head node
    gateway node --address 127.0.0.1:6380 --resources '{"worker": 4}'  # a worker node (any `ray start` flags)
    gateway run --address 127.0.0.1:6380                              # deploy onto the cluster
    ray stop                                                          # stop this machine's nodes
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from serve_app.config import GatewayConfig
from serve_app.config.serve_env import use_fast_path


def node_env(config: GatewayConfig, base: dict[str, str] | None = None, home: Path | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    use_fast_path(env, http_front=config.server.http_front, edge=config.server.http_edge)
    return token_auth_as_the_head(env, home)


def token_auth_as_the_head(env: dict[str, str], home: Path | None = None) -> dict[str, str]:
    """Ray 2.60's `ray start --head` turns token authentication on when a token exists (a local `ray.init()`
    writes ~/.ray/auth_token), but `ray start --address` and `ray.init(address=...)` do not, so a worker node or a
    driver on the same machine is refused by its own head. Decide the head's way for them too (in `env`)."""
    token = env.get("RAY_AUTH_TOKEN") or Path(env.get("RAY_AUTH_TOKEN_PATH") or
                                              (home or Path.home()) / ".ray" / "auth_token").is_file()
    if "RAY_AUTH_MODE" not in env and token:
        env["RAY_AUTH_MODE"] = "token"
    return env


def ray_start(config: GatewayConfig, ray_args: list[str]) -> int:
    """`ray start RAY_ARGS` (this environment's Ray) with the gateway's switches; its exit status."""
    ray = Path(sys.executable).with_name("ray")
    return subprocess.call([str(ray), "start", *ray_args], env=node_env(config))
