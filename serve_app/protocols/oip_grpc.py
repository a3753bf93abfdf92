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

import grpc
from opentelemetry.trace import SpanKind

from serve_app.dataplane import InferenceResponse
from serve_app.dataplane.priority import CURRENT, request_priority
from serve_app.dataplane.priority import PARAM as PRIORITY
from serve_app.errors import GatewayError, InvalidInput, retry_after
from serve_app.protocols import oip
from serve_app.protocols.auth import check_bearer
from serve_app.protocols.grpc_stubs import RPC_NAMES, Malformed
from serve_app.protocols.grpc_stubs import service_pb2 as pb
from serve_app.protocols.sse import guarded
from serve_app.protocols.tensors import (
    TEXT_INPUT,
    TextTensor,
    check_text_input,
    output_columns,
    pack_bytes,
    unpack_bytes,
)
from serve_app.tracing import TRACE_HEADER, parent_context, span, trace_id

log = logging.getLogger("ray.serve")


def _param_value(p) -> object:
    kind = p.WhichOneof("parameter_choice")
    return getattr(p, kind) if kind else None


def _params(request) -> dict:
    return {k: _param_value(v) for k, v in request.parameters.items()}


def _tensors(request, max_items: int) -> list[TextTensor]:
    """The request's input tensors, read straight from protobuf: raw_input_contents (what tritonclient sends)
    or typed bytes_contents. More than `max_items` elements are refused before any is copied or decoded."""
    tensors = []
    for i, t in enumerate(request.inputs):
        if i < len(request.raw_input_contents):
            items = unpack_bytes(request.raw_input_contents[i], max_items)
        else:
            if len(t.contents.bytes_contents) > max_items:
                raise InvalidInput(f"input '{t.name}': {len(t.contents.bytes_contents)} elements; the limit is "
                                   f"{max_items} texts per request", field="inputs")
            items = list(t.contents.bytes_contents)  # a non-BYTES tensor is refused by its datatype first
        tensors.append(TextTensor(t.name, t.datatype, list(t.shape), items))
    return tensors


def _infer_response(answer: InferenceResponse, request):
    """ModelInferResponse with every output in raw_output_contents (tritonclient ignores typed contents)."""
    msg = pb.ModelInferResponse(model_name=request.model_name, model_version=answer.version, id=request.id)
    for key, value in answer.oip_parameters().items():
        if isinstance(value, bool):
            msg.parameters[key].bool_param = value
        else:
            msg.parameters[key].string_param = value
    for col in output_columns(answer.results, [o.name for o in request.outputs] or None):
        tensor = msg.outputs.add(name=col.name, datatype=col.datatype, shape=col.shape)
        for key, value in col.parameters.items():
            tensor.parameters[key].string_param = str(value)
        msg.raw_output_contents.append(col.raw())
    return msg


def _stream_error(err: GatewayError, request):
    """A failed stream request: `error_message` (what tritonclient's callback gets) and a final response whose
    parameters carry the gRPC status the error has on unary calls (`grpc_status`: RESOURCE_EXHAUSTED,
    DEADLINE_EXCEEDED, ...), its `error_kind` and, when retrying helps, `retry_after` seconds. The stream's own
    status stays OK: it carries other requests, which go on."""
    msg = pb.ModelInferResponse(model_name=request.model_name, model_version=request.model_version, id=request.id)
    msg.parameters["triton_final_response"].bool_param = True
    msg.parameters["grpc_status"].string_param = err.grpc_status
    msg.parameters["error_kind"].string_param = err.kind
    if (seconds := retry_after(err)) is not None:
        msg.parameters["retry_after"].int64_param = seconds
    return pb.ModelStreamInferResponse(error_message=err.message, infer_response=msg)


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
        """Run an RPC's work under a server span (child of a `traceparent` in the metadata); errors become status
        codes, and the trace id goes back as trailing metadata `x-trace-id`."""
        metadata = _metadata(grpc_context)
        parts = getattr(work, "__qualname__", "rpc").split(".")  # OipGrpcServicer.ModelInfer.<locals>.work
        with span(f"grpc {parts[1] if len(parts) > 2 else parts[0]}",
                  context=parent_context(metadata), kind=SpanKind.SERVER) as server:
            trailing = [(TRACE_HEADER, tid)] if (tid := trace_id(server)) else []
            try:
                return await self._run(grpc_context, empty, work, trailing)
            finally:
                grpc_context.set_trailing_metadata(trailing)

    async def _run(self, grpc_context, empty, work, trailing: list):
        try:
            return await work()
        except GatewayError as err:
            grpc_context.set_code(getattr(grpc.StatusCode, err.grpc_status))
            grpc_context.set_details(err.message)
            if (seconds := retry_after(err)) is not None:
                trailing.append(("retry-after", str(seconds)))
        except Exception:  # noqa: BLE001 - logged here; the client gets a generic message
            log.exception("gRPC request failed")
            grpc_context.set_code(grpc.StatusCode.INTERNAL)
            grpc_context.set_details("internal error; see the server log")
        return empty

    async def ServerLive(self, request, grpc_context):  # noqa: N802 - RPC names are fixed by the protocol
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, grpc_context):  # noqa: N802
        async def work():
            _parsed(request)
            try:
                await self.dataplane.status.ready()
            except GatewayError:
                return pb.ServerReadyResponse(ready=False)
            return pb.ServerReadyResponse(ready=True)
        return await self._guard(grpc_context, pb.ServerReadyResponse(), work)

    async def ModelReady(self, request, grpc_context):  # noqa: N802
        async def work():
            _parsed(request)
            self._check_inference(grpc_context)
            ready = await oip.model_ready(self.dataplane, request.name, request.version or None)
            return pb.ModelReadyResponse(ready=ready)
        return await self._guard(grpc_context, pb.ModelReadyResponse(), work)

    async def ServerMetadata(self, request, grpc_context):  # noqa: N802
        async def work():
            _parsed(request)
            self._check_inference(grpc_context)
            meta = oip.server_metadata()
            return pb.ServerMetadataResponse(name=meta["name"], version=meta["version"],
                                             extensions=meta["extensions"])
        return await self._guard(grpc_context, pb.ServerMetadataResponse(), work)

    async def ModelMetadata(self, request, grpc_context):  # noqa: N802
        async def work():
            _parsed(request)
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
            _parsed(request)
            self._check_inference(grpc_context)
            deadline = self.dataplane.deadlines.deadline_s(_metadata(grpc_context).get("x-request-timeout"))
            if not request.inputs:
                raise InvalidInput(f"send one BYTES input tensor named '{TEXT_INPUT}'")
            dp = self.dataplane
            dp.table.check_served(request.model_name)
            texts = check_text_input(_tensors(request, dp.limits.max_texts), request.model_name)
            req = oip.inference_request(dp, request.model_name, request.model_version or None, texts,
                                        _params(request), _metadata(grpc_context))
            answer = await dp.deadlines.within(deadline, dp.inference.infer(req))
            return _infer_response(answer, request)
        return await self._guard(grpc_context, pb.ModelInferResponse(), work)

    async def ModelStreamInfer(self, requests, grpc_context):  # noqa: N802 - bidirectional stream
        """Triton's decoupled streaming, for models of a task that streams: each ModelInferRequest (one text in a
        BYTES tensor; parameters max_tokens, temperature, top_p, seed) is answered by one response per token
        chunk (BYTES output `text_output`, the delta), then an empty final one with `triton_final_response` and
        `finish_reason`. A failed request answers `error_message` (tritonclient's callback gets an error) with
        its status (`_stream_error`), and the stream goes on with the next request."""
        async for request in requests:
            if isinstance(request, Malformed):
                yield _stream_error(InvalidInput(request.message), pb.ModelInferRequest())
                continue
            try:
                stream = await self._open_stream(request, grpc_context)
            except GatewayError as err:
                yield _stream_error(err, request)
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
                    yield _stream_error(event["error"], request)
                    break
                yield pb.ModelStreamInferResponse(infer_response=msg)

    async def _open_stream(self, request, grpc_context):
        """One stream request's generation, admitted and started (typed errors until the replica accepts it)."""
        self._check_inference(grpc_context)
        texts = check_text_input(_tensors(request, self.dataplane.limits.max_texts)) if request.inputs else []
        if len(texts) != 1:
            raise InvalidInput("send one BYTES input tensor holding one text")
        params = _params(request)
        # tritonclient's async_stream_infer(enable_empty_final_response=True) asks for the empty final
        # response this stream always sends.
        params.pop("triton_enable_empty_final_response", None)
        if "max_tokens" in params:
            params["max_new_tokens"] = params.pop("max_tokens")
        CURRENT.set(request_priority({PRIORITY: params.pop(PRIORITY, None)}, _metadata(grpc_context)))
        dp = self.dataplane
        dp.inference.check_texts(texts)
        deadline = dp.deadlines.deadline_s(_metadata(grpc_context).get("x-request-timeout"))
        ref = request.model_name + (f"@{request.model_version}" if request.model_version else "")
        # No "kind": the model's task's contract gives it.
        return await dp.deadlines.within(deadline, dp.inference.open_stream(
            ref, {"text": texts[0], "params": params}, deadline))

    async def RepositoryIndex(self, request, grpc_context):  # noqa: N802
        async def work():
            _parsed(request)
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
            _parsed(request)
            self._check_admin(grpc_context)
            params = _params(request)
            await change(self.dataplane, request.model_name, {"parameters": params} if params else None)
            return response_cls()
        return await self._guard(grpc_context, response_cls(), work)

    def _check_admin(self, grpc_context) -> None:
        check_bearer(getattr(self, "admin_token", None), _metadata(grpc_context).get("authorization", ""), "admin")

    def _check_inference(self, grpc_context) -> None:
        check_bearer(getattr(self, "inference_token", None), _metadata(grpc_context).get("authorization", ""),
                     "inference")


def _parsed(request) -> None:
    """A body that was not the RPC's protobuf message (see grpc_stubs.Malformed) is bad input."""
    if isinstance(request, Malformed):
        raise InvalidInput(request.message)


def _metadata(grpc_context) -> dict[str, str]:
    """Call metadata by lower-case key (gRPC keys are lower-case on the wire; binary values are skipped)."""
    return {k.lower(): v for k, v in grpc_context.invocation_metadata() if isinstance(v, str)}


for _name in RPC_NAMES:
    if not hasattr(OipGrpcServicer, _name):
        setattr(OipGrpcServicer, _name, _unimplemented(_name))
