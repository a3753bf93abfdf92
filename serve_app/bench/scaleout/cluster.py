"""A Ray cluster of several nodes on this machine, as a user starts one (`gateway node`, README "Run on a Ray
cluster"), with every process it started known, so one node can be killed (`kill -9` of its raylet and everything
under it: its workers and agents) and the whole cluster stopped without `ray stop`, which would also stop any
other Ray on the machine (a test session's)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import psutil

from serve_app.bench.harness import free_port


@dataclass
class Node:
    name: str
    resources: dict
    raylet: psutil.Process | None = None


@dataclass
class LocalCluster:
    """`start()` a head and `workers` worker nodes (each with `{"worker": 1, name: 1}`), `kill(node)`, `stop()`."""

    workers: int = 2
    cpus_per_node: float = 1
    port: int = field(default_factory=free_port)
    nodes: list[Node] = field(default_factory=list)
    started: set[int] = field(default_factory=set)  # pids of every process our `ray start`s began

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _ray_start(self, node: Node, flags: list[str]) -> None:
        before = _ray_pids()
        cmd = [sys.executable, "-m", "serve_app.cli", "node", *flags, f"--num-cpus={self.cpus_per_node:g}",
               f"--resources={json.dumps(node.resources)}", "--disable-usage-stats",
               f"--metrics-export-port={free_port()}", "--object-store-memory=200000000"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"gateway node {' '.join(flags)} failed:\n{out.stdout}\n{out.stderr}")
        new = [psutil.Process(pid) for pid in _ray_pids() - before]
        self.started |= {p.pid for p in new}
        node.raylet = next(p for p in new if p.name() == "raylet")
        self.nodes.append(node)

    def start(self) -> LocalCluster:
        self._ray_start(Node("head", {"head": 1}), ["--head", f"--port={self.port}", "--include-dashboard=false",
                                                    f"--ray-client-server-port={free_port()}"])
        for i in range(self.workers):
            self._ray_start(Node(f"worker{i}", {"worker": 1, f"worker{i}": 1}), [f"--address={self.address}"])
        return self

    def node_of(self, node_id_hex: str, ray_nodes: list[dict]) -> Node:
        """Our node that Ray reports as `node_id_hex`: each was started with a custom resource of its own name
        (the raylet's port is dynamic, and its command line does not name it)."""
        resources = next(n["Resources"] for n in ray_nodes if n["NodeID"] == node_id_hex)
        for node in self.nodes:
            if node.name in resources:
                return node
        raise LookupError(f"no node of ours has the resources {sorted(resources)}")

    def kill(self, node: Node) -> float:
        """SIGKILL the node's raylet and every process under it; the time it happened (time.monotonic)."""
        victims = [node.raylet, *node.raylet.children(recursive=True)]
        for p in victims:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        return time.monotonic()

    def stop(self) -> None:
        """Kill what our `ray start`s began and what those processes started since (workers, agents)."""
        procs = []
        for pid in self.started:
            try:
                p = psutil.Process(pid)
                procs += [p, *p.children(recursive=True)]
            except psutil.Error:
                pass
        for p in procs:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=10)


def _ray_pids() -> set[int]:
    """Ray's own daemons on this machine (GCS, raylets, dashboard/runtime-env agents, log monitors)."""
    names = {"raylet", "gcs_server"}
    pids = set()
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
        except psutil.Error:
            continue
        if p.info["name"] in names or "ray/_private" in cmd or "ray/dashboard" in cmd or "ray/autoscaler" in cmd:
            pids.add(p.pid)
    return pids - {os.getpid()}
