"""p50 latency of classifying one text over each protocol, side by side in one run (tiny or real classifier):
the simple JSON API, OIP REST with JSON tensors, OIP REST with binary tensors (tritonclient.http default), and
OIP gRPC (tritonclient.grpc). Run after `make models`:  .venv/bin/python -m serve_app.bench.costs.protocol_latency
"""

from __future__ import annotations

import httpx
import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp

from serve_app.bench.harness import REPO, free_port, local_ray, p50_ms, start_gateway
from serve_app.builders import bbc
from serve_app.config import parse_config
from serve_app.config.serve_env import use_fast_path
from serve_app.config.settings import GatewaySettings

N = 100


def p50(fn) -> float:
    return p50_ms(fn, N)


def protocol_rows(text: str, http_port: int, grpc_port: int) -> list[tuple[str, float]]:
    simple = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=60)
    oip_json = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]}
    th = thttp.InferenceServerClient(f"127.0.0.1:{http_port}")
    tg = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    arr = np.array([text.encode()], dtype=np.object_)
    hin = thttp.InferInput("text", [1], "BYTES")
    hin.set_data_from_numpy(arr, binary_data=True)
    gin = tgrpc.InferInput("text", [1], "BYTES")
    gin.set_data_from_numpy(arr)
    return [
        ("simple JSON API  POST /v1/classify", p50(lambda: simple.post("/v1/classify", json={"texts": [text]})
                                                   .raise_for_status())),
        ("OIP REST, JSON tensors", p50(lambda: simple.post("/v2/models/classifier/infer", json=oip_json)
                                       .raise_for_status())),
        ("OIP REST, binary tensors (tritonclient.http)", p50(lambda: th.infer("classifier", [hin]))),
        ("OIP gRPC (tritonclient.grpc)", p50(lambda: tg.infer("classifier", [gin]))),
    ]


def main() -> None:
    use_fast_path()
    config = parse_config({"models": [{"name": "classifier", "task": "classification", "version": "stable",
                                       "max_length": 256, "resources": {"num_cpus": 0.5, "num_gpus": 0,
                                                                        "threads": 2}}]},
                          settings=GatewaySettings(models_dir=REPO / "models"))
    _, held_out = bbc.split(bbc.load_articles())
    with local_ray(num_cpus=2):
        http_port, grpc_port = free_port(), free_port()
        start_gateway(config, http_port, grpc_port)
        rows = protocol_rows(held_out[0].text, http_port, grpc_port)
    base = rows[0][1]
    for name, ms in rows:
        print(f"{name:<48} p50 {ms:7.1f} ms  ({ms / base:.2f}x the simple API)")


if __name__ == "__main__":
    main()
