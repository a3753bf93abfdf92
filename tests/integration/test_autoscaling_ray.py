"""Ray Serve autoscaling on a real local Ray: a model deployment declared with `resources.autoscaling` goes from
1 to 2 replicas under load and back to 1 once the load stops. The application is built the way a RayService
builds it (`deployments.k8s_builders:build_version`); an identity model with a delay stands in for weights."""

from __future__ import annotations

import asyncio
import os
import sys
import time

# Set before Ray starts (the session fixture): replicas report their load every 0.5 s, and they, not handles,
# are the source, as the load comes from an actor that Ray starts with this environment. (A handle in the pytest
# process pushed its metrics on its own schedule, and in one run of five never got the 2nd replica started.)
os.environ.setdefault("RAY_SERVE_COLLECT_AUTOSCALING_METRICS_ON_HANDLE", "0")
os.environ.setdefault("RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S", "0.5")

APP = "auto-echo--builtin"
MODEL = {"name": "auto-echo", "task": "identity", "delay_ms": 200,
         "resources": {"num_cpus": 0.1, "num_gpus": 0, "max_ongoing_requests": 8,
                       "autoscaling": {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1,
                                       "upscale_delay_s": 0.5, "downscale_delay_s": 1, "look_back_period_s": 11}}}
CLIENTS = 6  # requests in flight: 6 per replica at 1 replica, far above the target of 1


def replicas(states: list[tuple[float, dict]]) -> dict:
    """Replica counts by state (RUNNING, STARTING, STOPPING...), remembered with the time they were seen."""
    from ray import serve

    status = serve.status().applications[APP].deployments[MODEL["name"]]
    counts = dict(status.replica_states)
    states.append((time.monotonic(), counts))
    return counts


def wait_for(predicate, timeout_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.25)
    raise AssertionError(f"not reached within {timeout_s} s")


class LoadClient:
    """`clients` callers in a loop, each sending the next request when its answer arrives, until stopped."""

    def __init__(self, app: str, deployment: str):
        from ray import serve

        self.handle = serve.get_deployment_handle(deployment, app_name=app)
        self.stopped = False
        self.answers: list[dict] = []

    async def run(self, clients: int) -> list[dict]:
        async def caller() -> None:
            while not self.stopped:
                self.answers.append(await self.handle.infer.remote(["x"], {}))

        await asyncio.gather(*(caller() for _ in range(clients)))
        return self.answers

    def stop(self) -> None:
        self.stopped = True


def test_a_deployment_scales_to_two_replicas_under_load_and_back(serve_session, capsys):
    import ray
    from ray import cloudpickle, serve

    from deployments.k8s_builders import build_version

    serve.run(build_version({"config": {"models": [MODEL]}, "selector": "builtin", "gpus": 0}), name=APP,
              route_prefix=None)
    states: list[tuple[float, dict]] = []
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actor's class travels with it
    client = ray.remote(num_cpus=0)(LoadClient).remote(APP, MODEL["name"])
    try:
        assert replicas(states) == {"RUNNING": 1}
        loaded_at = time.monotonic()
        running = client.run.remote(CLIENTS)
        up = wait_for(lambda: replicas(states).get("RUNNING", 0) == 2, timeout_s=60)
        time.sleep(2)  # still under load: never beyond max_replicas
        assert replicas(states).get("RUNNING", 0) == 2
        ray.get(client.stop.remote())
        answers = ray.get(running, timeout=30)
        down = wait_for(lambda: replicas(states) == {"RUNNING": 1}, timeout_s=90)
    finally:
        ray.kill(client)
        serve.delete(APP)
    assert answers and all(a["results"] == [{"text": "x"}] for a in answers)
    # Never more than max_replicas wanted (a stopping replica may linger beside them).
    wanted = [counts.get("RUNNING", 0) + counts.get("STARTING", 0) for _, counts in states]
    assert max(wanted) <= 2, [counts for _, counts in states if sum(counts.values()) > 2]
    decided = next(t for (t, _), n in zip(states, wanted) if n == 2) - loaded_at
    with capsys.disabled():
        print(f"\nautoscaling: a 2nd replica asked for {decided:.1f} s and running {up:.1f} s after the load began; "
              f"back to 1 replica {down:.1f} s after it stopped ({len(answers)} requests)")
