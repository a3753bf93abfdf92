"""Runs inside .venv-kserve (KServe's SDK pins clash with the gateway's venv): drives the gateway with the stock
`kserve.InferenceRESTClient` and `InferenceGRPCClient` and prints one JSON object of what it saw.

    .venv-kserve/bin/python tests/integration/kserve_client.py BASE_URL GRPC_TARGET MODEL PIPELINE
"""

import asyncio
import json
import sys

import grpc
import httpx
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig


def text_input(texts, name="text", binary=False):
    inp = InferInput(name, [len(texts)], "BYTES")
    inp.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_), binary_data=binary)
    return inp


def decoded(response, name):
    return [x.decode() if isinstance(x, bytes) else str(x) for x in response.get_output_by_name(name).as_numpy()]


async def main(base_url, grpc_target, model, pipeline):
    seen = {}
    rest = InferenceRESTClient(RESTConfig(protocol="v2", timeout=120))
    seen["rest_server_ready"] = await rest.is_server_ready(base_url)
    seen["rest_model_ready"] = await rest.is_model_ready(base_url, model)
    for binary in (False, True):
        r = await rest.infer(base_url, InferRequest(model, [text_input(["one", "two"], binary=binary)]),
                             model_name=model)
        seen[f"rest_labels_binary_{binary}"] = decoded(r, "label")
        seen[f"rest_probabilities_shape_binary_{binary}"] = list(r.get_output_by_name("probabilities").as_numpy().shape)
    r = await rest.infer(base_url, InferRequest(pipeline, [text_input(["three"])]), model_name=pipeline)
    seen["rest_pipeline_labels"] = decoded(r, "label")
    try:
        await rest.infer(base_url, InferRequest(model, [text_input(["x"], name="no_such_input")]), model_name=model)
    except httpx.HTTPStatusError as err:
        seen["rest_bad_input"] = [err.response.status_code, err.response.json()["error"]]
    await rest.close()

    async with InferenceGRPCClient(grpc_target, timeout=120, retries=0) as g:
        seen["grpc_server_ready"] = await g.is_server_ready()
        seen["grpc_model_ready"] = await g.is_model_ready(model)
        r = await g.infer(InferRequest(model, [text_input(["four", "five"])]))
        seen["grpc_labels"] = decoded(r, "label")
        seen["grpc_model_version"] = r.model_version
        r = await g.infer(InferRequest(pipeline, [text_input(["six"])]))
        seen["grpc_pipeline_labels"] = decoded(r, "label")
        try:
            await g.infer(InferRequest(model, [text_input(["x"], name="no_such_input")]))
        except grpc.RpcError as err:
            seen["grpc_bad_input"] = [err.code().name, err.details()]
    print(json.dumps(seen))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
