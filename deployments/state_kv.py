"""The shared routing state's store in Ray: the GCS key-value store (the `KV` of serve_app/dataplane/shared_state).

Why GCS: every ingress replica on every node reaches it without an actor of ours in the path, it outlives every
replica (and, with GCS fault tolerance on an external Redis as the RayService sets up, the head node too), and
Ray Serve's own controller checkpoints its state there. A detached actor would be one more process to place,
restart and keep in step; the registry is the place for versions' files, not for a state polled every 200 ms.
"""

from __future__ import annotations

import os

from ray.experimental import internal_kv

from serve_app.dataplane.shared_state import SharedRoutes

NAMESPACE = "gateway"
SYNC_INTERVAL_S = 0.2  # how often each ingress replica polls for changes other replicas made
# How often each ingress replica looks for applications nobody routes to (GATEWAY_SWEEP_INTERVAL_S: tests).
SWEEP_INTERVAL_S = float(os.environ.get("GATEWAY_SWEEP_INTERVAL_S", "15"))


class GcsKV:
    def get(self, key: str) -> bytes | None:
        return internal_kv._internal_kv_get(key, namespace=NAMESPACE)

    def put(self, key: str, value: bytes) -> None:
        internal_kv._internal_kv_put(key, value, overwrite=True, namespace=NAMESPACE)

    def put_new(self, key: str, value: bytes) -> bool:
        # Ray's put answers "did the key exist already"; without overwrite the GCS writes it only if not.
        return not internal_kv._internal_kv_put(key, value, overwrite=False, namespace=NAMESPACE)

    def delete(self, key: str) -> None:
        internal_kv._internal_kv_del(key, namespace=NAMESPACE)


def shared_routes(state_key: str) -> SharedRoutes:
    """One gateway deployment's routing state. A change waits two polls before an unloaded version goes away."""
    return SharedRoutes(GcsKV(), f"routes/{state_key}", settle_s=2 * SYNC_INTERVAL_S + 0.1)
