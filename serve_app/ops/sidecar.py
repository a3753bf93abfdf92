"""Metrics sidecar: host and per-replica CPU and memory, GPUs through NVML, and the gateway's health as seen
from outside, as a Prometheus endpoint (prometheus-client, psutil, pynvml).

    python -m serve_app.ops.sidecar --port 9101 --gateway http://127.0.0.1:8000

With no GPU or no NVIDIA driver it exports `gateway_gpu_count 0` and nothing else about GPUs, without errors.
Values are read at scrape time (a custom collector), so nothing runs between scrapes.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Iterator

import httpx
import psutil
from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

# Ray titles replica processes "ray::ServeReplica:<application>:<deployment>".
REPLICA = re.compile(r"ray::ServeReplica:(?P<app>[^:\s]+):(?P<deployment>\S+)")
RESCAN_S = 15.0  # replicas come and go on deploys and restarts, not per second


def _nvml():
    """The pynvml module, initialised, or None when there is no usable NVIDIA driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # noqa: BLE001 - no library, no driver, no device: all mean "no GPU here"
        return None


class SidecarCollector(Collector):
    def __init__(self, gateway_url: str | None, probe_path: str = "/readyz", replica_pattern=REPLICA):
        self.gateway_url = gateway_url.rstrip("/") if gateway_url else None
        self.probe_path = probe_path
        self.replica_pattern = replica_pattern
        self.nvml = _nvml()
        # One client for every probe: a new one per scrape reloads the TLS trust store, most of a scrape's CPU.
        self._http = httpx.Client(timeout=5)
        # pid -> (process, application, deployment), kept between scrapes so cpu_percent has a baseline.
        self._procs: dict[int, tuple[psutil.Process, str, str]] = {}
        self._scanned_at = float("-inf")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._host()
        yield from self._replicas()
        yield from self._gpus()
        if self.gateway_url:
            yield from self._probe()

    def _host(self):
        cpu = GaugeMetricFamily("gateway_host_cpu_utilization_ratio", "Host CPU busy fraction (0-1)")
        cpu.add_metric([], psutil.cpu_percent(interval=None) / 100)
        yield cpu
        vm = psutil.virtual_memory()
        mem = GaugeMetricFamily("gateway_host_memory_bytes", "Host memory by state", labels=["state"])
        for state in ("total", "available", "used"):
            mem.add_metric([state], float(getattr(vm, state)))
        yield mem
        yield GaugeMetricFamily("gateway_host_cpu_count", "Logical CPUs of the host", value=psutil.cpu_count())

    def _find_replicas(self) -> None:
        """Walk the process table for Ray Serve replicas; the costly part of a scrape, so done every RESCAN_S."""
        found = {}
        for proc in psutil.process_iter(["pid", "cmdline"]):
            match = self.replica_pattern.search(" ".join(proc.info["cmdline"] or []))
            if match:
                pid = proc.info["pid"]
                old = self._procs.get(pid)
                found[pid] = old if old else (proc, match["app"], match["deployment"])
        self._procs = found
        self._scanned_at = time.monotonic()

    def _replicas(self):
        if time.monotonic() - self._scanned_at >= RESCAN_S:
            self._find_replicas()
        cpu = GaugeMetricFamily("gateway_replica_cpu_utilization_ratio",
                                "CPU used by a Ray Serve replica process, in cores (1.0 = one core busy)",
                                labels=["application", "deployment", "pid"])
        rss = GaugeMetricFamily("gateway_replica_resident_memory_bytes", "Resident memory of a replica process",
                                labels=["application", "deployment", "pid"])
        for pid, (proc, app, deployment) in list(self._procs.items()):
            try:
                labels = [app, deployment, str(pid)]
                cpu.add_metric(labels, proc.cpu_percent(interval=None) / 100)
                rss.add_metric(labels, float(proc.memory_info().rss))
            except psutil.Error:  # the process ended: drop it now, a new one appears at the next rescan
                del self._procs[pid]
        yield cpu
        yield rss

    def _gpus(self):
        nv = self.nvml
        count = nv.nvmlDeviceGetCount() if nv else 0
        yield GaugeMetricFamily("gateway_gpu_count", "NVIDIA GPUs visible through NVML", value=count)
        if not count:
            return
        util = GaugeMetricFamily("gateway_gpu_utilization_ratio", "GPU busy fraction (0-1)", labels=["gpu"])
        mem = GaugeMetricFamily("gateway_gpu_memory_bytes", "GPU memory by state", labels=["gpu", "state"])
        temp = GaugeMetricFamily("gateway_gpu_temperature_celsius", "GPU temperature", labels=["gpu"])
        power = GaugeMetricFamily("gateway_gpu_power_watts", "GPU power draw", labels=["gpu"])
        for i in range(count):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            util.add_metric([str(i)], nv.nvmlDeviceGetUtilizationRates(h).gpu / 100)
            info = nv.nvmlDeviceGetMemoryInfo(h)
            mem.add_metric([str(i), "total"], float(info.total))
            mem.add_metric([str(i), "used"], float(info.used))
            temp.add_metric([str(i)], float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)))
            power.add_metric([str(i)], nv.nvmlDeviceGetPowerUsage(h) / 1000)
        yield from (util, mem, temp, power)

    def _probe(self):
        started = time.perf_counter()
        try:
            ok = self._http.get(self.gateway_url + self.probe_path).status_code == 200
        except httpx.HTTPError:
            ok = False
        yield GaugeMetricFamily("gateway_probe_success", f"1 if GET {self.probe_path} answered 200", value=int(ok))
        yield GaugeMetricFamily("gateway_probe_duration_seconds", "Seconds the probe took",
                                value=time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9101)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--gateway", default="http://127.0.0.1:8000", help="gateway URL to probe ('' for none)")
    args = parser.parse_args(argv)
    REGISTRY.register(SidecarCollector(args.gateway or None))
    start_http_server(args.port, addr=args.host)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
