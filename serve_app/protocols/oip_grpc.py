"""OIP v2 over gRPC (`inference.GRPCInferenceService`), as methods of the ingress deployment.

Ray Serve's gRPC proxy calls the ingress method named like the RPC. Each method turns the protobuf request
into the same OIP operation the REST routes use (`serve_app.protocols.oip`), and a `GatewayError` into its
gRPC status from the shared table; nothing else reaches the client (no tracebacks). RPCs we do not serve
answer UNIMPLEMENTED.

Auth and deadlines read the call's metadata: `authorization: Bearer <token>` (the inference token for model
RPCs, the admin token for repository load/unload; ServerLive/ServerReady stay open) and `x-request-timeout`
(seconds; the configured default otherwise). A client-side gRPC deadline is kept by the client and Ray Serve's
proxy; the gateway's own deadline answers DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import logging
import math

import grpc

from serve_app.protocols.auth import check_bearer
from serve_app.errors import GatewayError, InvalidInput, ModelNotReady, Overloaded
from serve_app.protocols import oip
from serve_app.protocols.grpc_stubs import RPC_NAMES
from serve_app.protocols.grpc_stubs import service_pb2 as pb
from serve_app.protocols.sse import guarded
from serve_app.protocols.tensors import TEXT_INPUT, decode_texts, pack_bytes

log = logging.getLogger("ray.serve")


def _param_value(p) -> object:
    kind = p.WhichOneof("parameter_choice")
    return getattr(p, kind) if kind else None


def _request_dict(request) -> tuple[dict, bytes]:
    """The REST-shaped request and binary tail for a ModelInferRequest (raw or typed contents)."""
    inputs, tail = [], b""
    for i, t in enumerate(request.inputs):
        entry = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
        if i < len(request.raw_input_contents):
            raw = request.raw_input_contents[i]
            entry["parameters"] = {"binary_data_size": len(raw)}
            tail += raw
        else:
            entry["data"] = list(t.contents.bytes_contents)
            if entry["datatype"] == "BYTES":
                raw = pack_bytes(entry.pop("data"))
                entry["parameters"] = {"binary_data_size": len(raw)}
                tail += raw
        inputs.append(entry)
    params = {k: _param_value(v) for k, v in request.parameters.items()}
    outputs = [{"name": o.name, "parameters": {"binary_data": True}} for o in request.outputs]
    body = {"id": request.id, "inputs": inputs, "parameters": {**params, "binary_data_output": True}}
    if outputs:
        body["outputs"] = outputs
    return body, tail


def _infer_response(response: dict, tail: bytes):
    """ModelInferResponse with every output in raw_output_contents (tritonclient ignores typed contents)."""
    msg = pb.ModelInferResponse(model_name=response["model_name"], model_version=response.get("model_version", ""),
                                id=response.get("id", ""))
    offset = 0
    for out in response["outputs"]:
        tensor = msg.outputs.add(name=out["name"], datatype=out["datatype"], shape=out["shape"])
        for key, value in (out.get("parameters") or {}).items():
            if key != "binary_data_size":
                tensor.parameters[key].string_param = str(value)
        size = out["parameters"]["binary_data_size"]
        msg.raw_output_contents.append(tail[offset:offset + size])
        offset += size
    return msg


def _unimplemented(name: str):
    async def method(self, request, grpc_context):
        grpc_context.set_code(grpc.StatusCode.UNIMPLEMENTED)
        grpc_context.set_details(f"{name} is not implemented by this server")
        return getattr(pb, f"{name}Response", pb.ServerLiveResponse)()

    method.__name__ = name
    return method


class OipGrpcServicer:
    """Mixin for the ingress deployment; expects `self.dataplane`."""

    async def _guard(self, grpc_context, empty, work):
        try:
            return await work()
        except GatewayError as err:
            grpc_context.set_code(getattr(grpc.StatusCode, err.grpc_status))
            grpc_context.set_details(err.message)
            if isinstance(err, Overloaded | ModelNotReady):
                retry_after = max(1, math.ceil(err.details.get("retry_after_s", 1)))
                grpc_context.set_trailing_metadata([("retry-after", str(retry_after))])
        except Exception:  # noqa: BLE001 - logged here; the client gets a generic message
            log.exception("gRPC request failed")
            grpc_context.set_code(grpc.StatusCode.INTERNAL)
            grpc_context.set_details("internal error; see the server log")
        return empty

    async def ServerLive(self, request, grpc_context):  # noqa: N802 - RPC names are fixed by the protocol
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, grpc_context):  # noqa: N802
        async def work():
            try:
                await self.dataplane.ready()
            except GatewayError:
                return pb.ServerReadyResponse(ready=False)
            return pb.ServerReadyResponse(ready=True)
        return await self._guard(grpc_context, pb.ServerReadyResponse(), work)

    async def ModelReady(self, request, grpc_context):  # noqa: N802
        async def work():
            self._check_inference(grpc_context)
            ready = await oip.model_ready(self.dataplane, request.name, request.version or None)
            return pb.ModelReadyResponse(ready=ready)
        return await self._guard(grpc_context, pb.ModelReadyResponse(), work)

    async def ServerMetadata(self, request, grpc_context):  # noqa: N802
        async def work():
            self._check_inference(grpc_context)
            meta = oip.server_metadata()
            return pb.ServerMetadataResponse(name=meta["name"], version=meta["version"],
                                             extensions=meta["extensions"])
        return await self._guard(grpc_context, pb.ServerMetadataResponse(), work)

    async def ModelMetadata(self, request, grpc_context):  # noqa: N802
        async def work():
            self._check_inference(grpc_context)
            meta = await oip.model_metadata(self.dataplane, request.name, request.version or None)
            msg = pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"], platform=meta["platform"])
            for kind in ("inputs", "outputs"):
                for t in meta[kind]:
                    getattr(msg, kind).add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
            return msg
        return await self._guard(grpc_context, pb.ModelMetadataResponse(), work)

    async def ModelInfer(self, request, grpc_context):  # noqa: N802
        async def work():
            self._check_inference(grpc_context)
            deadline = self.dataplane.deadline_s(_metadata(grpc_context).get("x-request-timeout"))
            if not request.inputs:
                raise InvalidInput(f"send one BYTES input tensor named '{TEXT_INPUT}'")
            body, tail = _request_dict(request)
            response, out_tail = await self.dataplane.within(deadline, oip.infer(
                self.dataplane, request.model_name, request.model_version or None, body, tail))
            return _infer_response(response, out_tail)
        return await self._guard(grpc_context, pb.ModelInferResponse(), work)

    async def ModelStreamInfer(self, requests, grpc_context):  # noqa: N802 - bidirectional stream
        """Triton's decoupled streaming, for summarizers: each ModelInferRequest (one text in a BYTES tensor;
        parameters max_tokens, temperature, top_p, seed) is answered by one response per token chunk (BYTES
        output `text_output`, the delta), then an empty final one with `triton_final_response` and
        `finish_reason`. A failed request answers `error_message` (tritonclient's callback gets an error) and
        the stream goes on with the next request."""
        async for request in requests:
            try:
                self._check_inference(grpc_context)
                body, tail = _request_dict(request)
                texts = decode_texts(body, tail) if request.inputs else []
                if len(texts) != 1:
                    raise InvalidInput("send one BYTES input tensor holding one text")
                text = texts[0]
                params = {k: v for k, v in body["parameters"].items() if k != "binary_data_output"}
                if "max_tokens" in params:
                    params["max_new_tokens"] = params.pop("max_tokens")
                self.dataplane.check_texts(texts)
                deadline = self.dataplane.deadline_s(_metadata(grpc_context).get("x-request-timeout"))
                ref = request.model_name + (f"@{request.model_version}" if request.model_version else "")
                stream = await self.dataplane.within(deadline, self.dataplane.open_stream(
                    ref, {"kind": "summary", "text": text, "params": params}, deadline))
            except GatewayError as err:
                yield pb.ModelStreamInferResponse(error_message=err.message)
                continue
            except Exception:  # noqa: BLE001 - logged here; the client gets a generic message
                log.exception("gRPC stream request failed")
                yield pb.ModelStreamInferResponse(error_message="internal error; see the server log")
                continue
            async for event in guarded(stream):
                msg = pb.ModelInferResponse(model_name=stream.model, model_version=stream.version, id=request.id)
                if event["type"] == "token":
                    msg.outputs.add(name="text_output", datatype="BYTES", shape=[1])
                    msg.raw_output_contents.append(pack_bytes([event["text"].encode()]))
                elif event["type"] == "done":
                    msg.parameters["triton_final_response"].bool_param = True
                    msg.parameters["finish_reason"].string_param = event["finish_reason"]
                    msg.parameters["completion_tokens"].int64_param = event["completion_tokens"]
                else:
                    yield pb.ModelStreamInferResponse(error_message=event["error"].message)
                    break
                yield pb.ModelStreamInferResponse(infer_response=msg)

    async def RepositoryIndex(self, request, grpc_context):  # noqa: N802
        async def work():
            self._check_inference(grpc_context)
            msg = pb.RepositoryIndexResponse()
            for e in await oip.repository_index(self.dataplane):
                msg.models.add(name=e["name"], version=e["version"], state=e["state"], reason=e["reason"])
            return msg
        return await self._guard(grpc_context, pb.RepositoryIndexResponse(), work)

    async def RepositoryModelLoad(self, request, grpc_context):  # noqa: N802
        return await self._repository_change(request, grpc_context, oip.load, pb.RepositoryModelLoadResponse)

    async def RepositoryModelUnload(self, request, grpc_context):  # noqa: N802
        return await self._repository_change(request, grpc_context, oip.unload, pb.RepositoryModelUnloadResponse)

    async def _repository_change(self, request, grpc_context, change, response_cls):
        async def work():
            self._check_admin(grpc_context)
            params = {k: _param_value(v) for k, v in request.parameters.items()}
            await change(self.dataplane, request.model_name, {"parameters": params} if params else None)
            return response_cls()
        return await self._guard(grpc_context, response_cls(), work)

    def _check_admin(self, grpc_context) -> None:
        check_bearer(getattr(self, "admin_token", None), _metadata(grpc_context).get("authorization", ""), "admin")

    def _check_inference(self, grpc_context) -> None:
        check_bearer(getattr(self, "inference_token", None), _metadata(grpc_context).get("authorization", ""),
                     "inference")


def _metadata(grpc_context) -> dict[str, str]:
    """Call metadata by lower-case key (gRPC keys are lower-case on the wire; binary values are skipped)."""
    return {k.lower(): v for k, v in grpc_context.invocation_metadata() if isinstance(v, str)}


for _name in RPC_NAMES:
    if not hasattr(OipGrpcServicer, _name):
        setattr(OipGrpcServicer, _name, _unimplemented(_name))
