"""Under load the model runs full batches, on every protocol: 32 concurrent requests to a slow model (an identity
model sleeping 300 ms per call, coalesced by the ingress) arrive in at most 4 model calls. The sizes are read
from the replica itself (the same values it records in the gateway_batch_size histogram). Without batches that
fill, each burst would cost up to 32 calls."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
from support.serve import SERVE_ADDRESSES, call_deployment, gateway_fixture

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings

MODEL = "slow-batched"
BURST = 32


def gateway_config():
    return parse_config({"models": [
        {"name": MODEL, "task": "identity", "delay_ms": 300, "resources": {"num_cpus": 0.05, "num_gpus": 0},
         "batching": {"max_batch_size": 16, "batch_wait_timeout_s": 0, "coalesce": True}}],
        # The simple JSON API reaches an identity model through a pipeline (/v1/classify takes classifiers).
        "pipelines": [{"name": "slow-echo", "graph": {"type": "model", "model": MODEL}}]},
        settings=GatewaySettings())


def warm(base: str) -> None:
    """One call first, so the burst does not also pay for the handles' first use (routers, connections):
    a cold burst arrives spread out and splits into more, smaller batches."""
    r = httpx.post(f"{base}/v1/pipelines/slow-echo", json={"texts": ["warm"]}, timeout=60)
    assert r.status_code == 200, r.text


gateway = gateway_fixture(gateway_config, timeout=None, ready=warm)


def burst_over_http(base: str, body_of, path: str, check) -> None:
    async def main():
        limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=BURST)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
            async def one(n):
                r = await client.post(path, json=body_of(n))
                assert r.status_code == 200, r.text
                check(r.json(), n)

            await asyncio.gather(*(one(n) for n in range(BURST)))

    asyncio.run(main())


def burst_over_grpc() -> None:
    import tritonclient.grpc.aio as tgrpc

    async def main():
        client = tgrpc.InferenceServerClient(SERVE_ADDRESSES["grpc"])
        try:
            async def one(n):
                inp = tgrpc.InferInput("text", [1], "BYTES")
                inp.set_data_from_numpy(np.array([f"g{n}".encode()], dtype=np.object_))
                result = await client.infer(MODEL, [inp])
                assert result.as_numpy("text")[0] == f"g{n}".encode()

            await asyncio.gather(*(one(n) for n in range(BURST)))
        finally:
            await client.close()

    asyncio.run(main())


def oip_body(n):
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [f"o{n}"]}]}


def check_oip(answer, n):
    assert answer["outputs"][0]["data"] == [f"o{n}"]


def check_simple(answer, n):
    assert answer["results"] == [{"text": f"s{n}"}]


@pytest.mark.parametrize("protocol", ["simple-json", "oip-rest", "oip-grpc"])
def test_a_burst_of_32_runs_in_full_batches(gateway, protocol):
    before = len(call_deployment(f"{MODEL}--builtin", MODEL, "stats")["batch_sizes"])
    if protocol == "simple-json":
        burst_over_http(gateway, lambda n: {"texts": [f"s{n}"]}, "/v1/pipelines/slow-echo", check_simple)
    elif protocol == "oip-rest":
        burst_over_http(gateway, oip_body, f"/v2/models/{MODEL}/infer", check_oip)
    else:
        burst_over_grpc()
    sizes = call_deployment(f"{MODEL}--builtin", MODEL, "stats")["batch_sizes"][before:]
    assert sum(sizes) == BURST
    # Two calls may leave before the burst is queued (one per run slot plus one waiting); the rest fill up.
    # At most 4 calls for 32 requests means batches of 8 or more on average (seen: [16, 16], [9, 8, 15]);
    # without batching it is 32 calls of one.
    assert len(sizes) <= 4, f"{BURST} requests took {len(sizes)} model calls: {sizes}"
    assert max(sizes) <= 16, f"a batch over max_batch_size: {sizes}"
