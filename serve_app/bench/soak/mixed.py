"""The mixed soak's target: classify, summarize and a pipeline over HTTP and gRPC, round robin."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import httpx

from serve_app.bench.soak.targets import Target, post


@dataclass
class MixedTarget:
    """The mixed soak: request i is kind i % 5 - classify over the simple API, classify over OIP gRPC,
    summarize (8 new tokens), the classify_ensemble pipeline (two classifiers fused) and classify over OIP
    REST - so HTTP and gRPC, both models and a pipeline run together. Answers: label and probabilities within
    1e-3 for classifiers, the exact summary (greedy; the soak's summarizer does not batch, see soak_config)."""

    base_url: str
    grpc_target: str
    headers: dict = field(default_factory=dict)
    model: str = "mixed"
    task: str = "mixed"
    kinds: tuple = (("classify_http",), ("classify_grpc",), ("summarize_http",), ("pipeline_http",),
                    ("classify_oip_rest",))

    def __post_init__(self):
        import grpc

        from serve_app.protocols.grpc_stubs import service_pb2, service_pb2_grpc

        self._pb = service_pb2
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(self.grpc_target))
        self._metadata = [(k.lower(), v) for k, v in self.headers.items()]

    def call(self, client: httpx.Client, text: str, i: int):
        kind = self.kinds[i % len(self.kinds)][0]
        if kind == "classify_grpc":
            return self._grpc(text, time.perf_counter())
        path, body = {
            "classify_http": ("/v1/classify", {"texts": [text], "model": "classifier"}),
            "summarize_http": ("/v1/summarize", {"texts": [text], "model": "summarizer", "max_new_tokens": 8}),
            "pipeline_http": ("/v1/pipelines/classify_ensemble", {"texts": [text]}),
            "classify_oip_rest": ("/v2/models/classifier/infer", {"inputs": [
                {"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]}),
        }[kind]
        return post(client, path, body, lambda out: self._answer(kind, out))

    @staticmethod
    def _answer(kind: str, out: dict) -> object:
        if kind == "summarize_http":
            return out["results"][0]["summary"]
        if kind == "classify_oip_rest":
            tensors = {o["name"]: o for o in out["outputs"]}
            labels = json.loads(tensors["probabilities"]["parameters"]["labels"])
            probs = dict(zip(labels, tensors["probabilities"]["data"], strict=True))
            return tensors["label"]["data"][0], {k: round(v, 4) for k, v in probs.items()}
        result = out["results"][0]
        return result["label"], {k: round(v, 4) for k, v in result["probabilities"].items()}

    def _grpc(self, text: str, started: float):
        import struct

        import grpc

        pb = self._pb
        request = pb.ModelInferRequest(model_name="classifier")
        request.inputs.add(name="text", datatype="BYTES", shape=[1])
        request.raw_input_contents.append(struct.pack("<I", len(text.encode())) + text.encode())
        try:
            response = self._stub.ModelInfer(request, metadata=self._metadata, timeout=30)
        except grpc.RpcError as err:
            return None, time.perf_counter() - started, f"grpc:{err.code().name}"
        elapsed = time.perf_counter() - started
        outputs = {o.name: (o, raw) for o, raw in zip(response.outputs, response.raw_output_contents, strict=True)}
        label_raw = outputs["label"][1]
        label = label_raw[4:4 + struct.unpack_from("<I", label_raw)[0]].decode()
        tensor, raw = outputs["probabilities"]
        labels = json.loads(tensor.parameters["labels"].string_param)
        values = struct.unpack(f"<{len(labels)}f", raw)
        return (label, {k: round(v, 4) for k, v in zip(labels, values, strict=True)}), elapsed, 200

    @staticmethod
    def same(expected: object, got: object) -> bool:
        return Target.same(expected, got)
