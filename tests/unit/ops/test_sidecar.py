"""The metrics sidecar for real on this machine: host, replica processes found by title, no-GPU path, probe."""

import subprocess
import sys
import threading
from http.server import HTTPServer

from prometheus_client import CollectorRegistry, generate_latest
from support.servers import Ready

from serve_app.ops.sidecar import SidecarCollector


def scrape(collector) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(collector)
    samples = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


def test_sidecar_exports_host_replicas_gpus_and_probe():
    server = HTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # A stand-in replica: Ray puts "ray::ServeReplica:<app>:<deployment>" in the process title.
    fake = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "ray::ServeReplica:clf--v1:clf"])
    try:
        collector = SidecarCollector(f"http://127.0.0.1:{server.server_port}")
        samples = scrape(collector)
        assert 0 <= samples["gateway_host_cpu_utilization_ratio"] <= 1
        assert samples['gateway_host_memory_bytes{state="total"}'] > 1e9
        key = f'gateway_replica_resident_memory_bytes{{application="clf--v1",deployment="clf",pid="{fake.pid}"}}'
        assert samples[key] > 1e6
        # What NVML itself sees (0 and no error on a host without a GPU or driver); per-GPU series only with GPUs.
        gpus = collector.nvml.nvmlDeviceGetCount() if collector.nvml else 0
        assert samples["gateway_gpu_count"] == gpus
        assert any(k.startswith("gateway_gpu_utilization") for k in samples) == (gpus > 0)
        assert samples["gateway_probe_success"] == 1 and samples["gateway_probe_duration_seconds"] < 5
        Ready.status = 503
        assert scrape(collector)["gateway_probe_success"] == 0
        server.shutdown()
        assert scrape(collector)["gateway_probe_success"] == 0  # nothing listening
    finally:
        fake.kill()
        Ready.status = 200
