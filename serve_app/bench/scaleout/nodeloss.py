"""S1, S2: a worker node killed under a steady load, on a four-node Ray cluster on this machine.

The gateway runs as a user runs it on a cluster (`gateway node` for a head and three workers, then `gateway run
--address`): its model on the worker nodes (`resources.custom: {worker: 0.1}`), two replicas on two different
nodes (`max_replicas_per_node: 1`), and two ingress replicas. An open-loop stream at 70% of the measured capacity
(bench/load.py) runs through Ray's proxy on the head; a third of the way in, the node holding one of the model's
replicas is killed with SIGKILL (its raylet and every process under it), and Ray starts the lost replica on the
third worker. Every answer is checked against the answer its input got before the kill.

S1: answers wrong (0) and requests failed (<= the requests in flight at the kill).
S2: seconds from the kill until the model answers again: until the first answer to a request sent after the last
    failure (or after the kill, with none), <= 30 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from serve_app.bench.harness import REPO, free_port, wait_http
from serve_app.bench.load import closed_loop_blocking, open_loop
from serve_app.bench.scaleout.cluster import LocalCluster
from serve_app.bench.soak.targets import TEXTS, Target, call
from serve_app.ops.cluster import token_auth_as_the_head


def gateway_config(http_port: int, classifier: bool) -> dict:
    """One model on the worker nodes: the prepared classifier, or the identity model (tests)."""
    model = ({"name": "classifier", "task": "classification", "source": str(REPO / "models" / "classifier"),
              "max_length": 128} if classifier else {"name": "echo", "task": "identity"})
    model["resources"] = {"num_cpus": 0.2, "num_gpus": 0, "custom": {"worker": 0.1}, "replicas": 2,
                          "max_replicas_per_node": 1}
    return {"server": {"http_port": http_port, "grpc_port": 0, "ingress_replicas": 2, "ingress_num_cpus": 0.1},
            "models": [model]}


@dataclass
class Tally:
    """Every request's outcome, and how many were in flight at a moment (the kill)."""

    reference: dict
    target: Target
    client: httpx.Client
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    outcomes: list[tuple[float, float, int | str, bool]] = field(default_factory=list)  # sent, done, status, right

    def one(self, n: int) -> None:
        text = TEXTS[n % len(TEXTS)]
        with self.lock:
            self.in_flight += 1
        sent = time.monotonic()
        answer, _, status = call(self.client, self.target, text, n)
        right = status == 200 and self.target.same(self.reference[text], answer)
        with self.lock:
            self.in_flight -= 1
            self.outcomes.append((sent, time.monotonic(), status, right))


def recovery_s(outcomes: list[tuple[float, float, int | str, bool]], kill: float) -> float | None:
    """S2: from the kill until the first answer to a request sent after the last failure (after the kill, if
    none failed); None when no request sent then was answered."""
    after = sorted(o for o in outcomes if o[0] >= kill)
    failed = [o for o in outcomes if o[2] != 200 and o[1] >= kill]
    since = max([o[0] for o in failed], default=kill)
    answered = [done for sent, done, status, _ in after if sent > since and status == 200]
    return round(min(answered) - kill, 2) if answered else None


def start_gateway(cluster: LocalCluster, work: Path, classifier: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    (work / "gateway.yaml").write_text(yaml.safe_dump(gateway_config(port, classifier)))
    log = (work / "gateway.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "serve_app.cli", "run", "--config", str(work / "gateway.yaml"),
                             "--address", cluster.address], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "GATEWAY_SIDECAR_PORT": "0"})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", seconds=240)
    except TimeoutError:
        proc.terminate()
        tail = (work / "gateway.log").read_text()[-3000:]
        raise RuntimeError(f"the gateway did not start on the cluster:\n{tail}") from None
    return proc, base


def alive_replicas(app: str, deployment: str) -> list[dict]:
    """The alive replica actors of `app`'s `deployment` (name, node id), read from the GCS actor table, so no
    dashboard (Ray's state API server) is needed; the caller is a driver of the cluster."""
    from ray._private import state

    return [{"name": a["Name"], "node_id": a["Address"]["NodeID"]}
            for a in state.actors(actor_state_name="ALIVE").values()
            if a["ActorClassName"] == f"ServeReplica:{app}:{deployment}"]


def replica_nodes(deployment: str) -> list[str]:
    """Node ids (hex) of the alive replicas of `deployment`, whichever application it is in."""
    from ray._private import state

    return [a["Address"]["NodeID"] for a in state.actors(actor_state_name="ALIVE").values()
            if a["ActorClassName"].startswith("ServeReplica:") and a["ActorClassName"].endswith(f":{deployment}")]


def measure(work: Path, classifier: bool, seconds: float, tick=print) -> dict:
    """Start the cluster and the gateway, load it, kill the node holding the model's replica; S1, S2."""
    token_auth_as_the_head(os.environ)  # before Ray is first imported: it reads the mode then
    import ray

    cluster, gateway, name = LocalCluster(workers=3), None, "classifier" if classifier else "echo"
    try:
        tick("starting a head and three worker nodes (gateway node)")
        cluster.start()
        tick(f"gateway run --address {cluster.address}")
        gateway, base = start_gateway(cluster, work, classifier)
        ray.init(address=cluster.address, logging_level="error")
        target = Target(base, name, "classification" if classifier else "identity")
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        with httpx.Client(base_url=base, timeout=60, limits=limits) as client:
            reference = references(client, target)
            capacity = closed_loop_blocking(lambda n: _checked(client, target, n), 8, 5.0).rps
            node_id = replica_nodes(name)[0]
            victim = cluster.node_of(node_id, ray.nodes())
            tally, kill = Tally(reference, target, client), {}

            def killer() -> None:
                with tally.lock:  # no request starts or ends while the count is taken and the node dies
                    kill["in_flight"], kill["at"] = tally.in_flight, cluster.kill(victim)

            tick(f"capacity {capacity:.1f} req/s; {seconds:.0f} s at 70% of it, {victim.name} killed at "
                 f"{seconds / 3:.0f} s")
            timer = threading.Timer(seconds / 3, killer)
            timer.start()
            open_loop(tally.one, 0.7 * capacity, seconds)
            timer.join()
            back = replicas_back(name, node_id, kill["at"])
        return report(tally.outcomes, kill, capacity, victim.name, back)
    finally:
        if gateway is not None:
            gateway.terminate()
            try:
                gateway.wait(60)
            except subprocess.TimeoutExpired:
                gateway.kill()
        ray.shutdown()
        cluster.stop()


def references(client: httpx.Client, target: Target) -> dict:
    out = {}
    for text in TEXTS:
        answer, _, status = call(client, target, text)
        if status != 200:
            raise RuntimeError(f"the gateway on the cluster answered {status} before any fault")
        out[text] = answer
    return out


def _checked(client: httpx.Client, target: Target, n: int) -> object:
    answer, _, status = call(client, target, TEXTS[n % len(TEXTS)], n)
    if status != 200:
        raise RuntimeError(str(status))
    return answer


def replicas_back(name: str, dead_node: str, kill_at: float, want: int = 2, within_s: float = 120) -> float | None:
    """Seconds from the kill until the model has `want` alive replicas, none on the dead node (Ray's view)."""
    while time.monotonic() - kill_at < within_s:
        nodes = replica_nodes(name)
        if len(nodes) >= want and dead_node not in nodes:
            return round(time.monotonic() - kill_at, 2)
        time.sleep(0.5)
    return None


def report(outcomes: list, kill: dict, capacity: float, victim: str, back: float | None) -> dict:
    failed = [o for o in outcomes if o[2] != 200]
    wrong = [o for o in outcomes if o[2] == 200 and not o[3]]
    s2 = recovery_s(outcomes, kill["at"])
    statuses: dict[str, int] = {}
    for o in outcomes:
        statuses[str(o[2])] = statuses.get(str(o[2]), 0) + 1
    return {"capacity_rps": round(capacity, 1), "rate_rps": round(0.7 * capacity, 1), "requests": len(outcomes),
            "statuses": statuses, "killed": victim, "in_flight_at_kill": kill["in_flight"], "failed": len(failed),
            "wrong": len(wrong), "S1_met": not wrong and len(failed) <= kill["in_flight"],
            "recovery_s": s2, "S2_met": s2 is not None and s2 <= 30, "replica_back_s": back}
