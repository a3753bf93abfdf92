"""p50 latency of classifying one text over each protocol, side by side in one run (tiny or real classifier):
the simple JSON API, OIP REST with JSON tensors, OIP REST with binary tensors (tritonclient.http default), and
OIP gRPC (tritonclient.grpc). Run after `make models`:  .venv/bin/python scripts/protocol_latency.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import tritonclient.grpc as tgrpc  # noqa: E402
import tritonclient.http as thttp  # noqa: E402

from serve_app.config import parse_config  # noqa: E402
from serve_app.builders import bbc  # noqa: E402
from serve_app.config.settings import GatewaySettings  # noqa: E402

N = 100


def p50(fn) -> float:
    fn()
    times = []
    for _ in range(N):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    import ray
    from conftest import free_port
    from ray import serve

    from deployments.assemble import deploy, start_serve

    config = parse_config({"models": [{"name": "classifier", "task": "classification", "version": "stable",
                                       "max_length": 256, "resources": {"num_cpus": 0.5, "num_gpus": 0,
                                                                        "threads": 2}}]},
                          settings=GatewaySettings(models_dir=REPO / "models"))
    _, held_out = bbc.split(bbc.load_articles())
    text = held_out[0].text
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="error")
    http_port, grpc_port = free_port(), free_port()
    start_serve(config, "127.0.0.1", http_port, grpc_port)
    try:
        deploy(config)
        simple = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=60)
        oip_json = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]}
        th = thttp.InferenceServerClient(f"127.0.0.1:{http_port}")
        tg = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        arr = np.array([text.encode()], dtype=np.object_)
        hin = thttp.InferInput("text", [1], "BYTES")
        hin.set_data_from_numpy(arr, binary_data=True)
        gin = tgrpc.InferInput("text", [1], "BYTES")
        gin.set_data_from_numpy(arr)
        rows = [
            ("simple JSON API  POST /v1/classify", p50(lambda: simple.post("/v1/classify", json={"texts": [text]})
                                                       .raise_for_status())),
            ("OIP REST, JSON tensors", p50(lambda: simple.post("/v2/models/classifier/infer", json=oip_json)
                                           .raise_for_status())),
            ("OIP REST, binary tensors (tritonclient.http)", p50(lambda: th.infer("classifier", [hin]))),
            ("OIP gRPC (tritonclient.grpc)", p50(lambda: tg.infer("classifier", [gin]))),
        ]
    finally:
        serve.shutdown()
        ray.shutdown()
    base = rows[0][1]
    for name, ms in rows:
        print(f"{name:<48} p50 {ms:7.1f} ms  ({ms / base:.2f}x the simple API)")


if __name__ == "__main__":
    main()
