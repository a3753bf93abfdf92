"""The OIP gRPC stubs that tritonclient ships, importable under the module name their messages claim, and the
servicer registration Ray Serve's gRPC proxy calls.

tritonclient's generated classes say they live in `grpc_service_pb2`; Ray pickles requests and responses
between its gRPC proxy and the replicas, which needs that name importable in both. Ray's proxy imports this
module (see GRPC_SERVICER below), and so do the replicas, so the alias exists wherever it is needed.

A request body that is not the RPC's protobuf message fails in the proxy's deserializer, where grpcio answers
UNKNOWN naming the Python exception class. The registration below gives every RPC a deserializer that turns
such a body into a `Malformed` marker instead; the ingress answers it INVALID_ARGUMENT like any other bad input.
"""

from __future__ import annotations

import sys

from google.protobuf.message import DecodeError
from tritonclient.grpc import service_pb2, service_pb2_grpc

sys.modules.setdefault("grpc_service_pb2", service_pb2)

RPC_NAMES = list(service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name)


class Malformed:
    """Stands in for a request whose bytes did not parse as the RPC's message (pickled to the replica)."""

    def __init__(self, problem: str):
        self.problem = problem

    @property
    def message(self) -> str:
        return f"the request is not a valid protobuf message of this RPC: {self.problem}"


def _lenient(parse):
    def deserialize(raw: bytes):
        try:
            return parse(raw)
        except DecodeError as err:
            return Malformed(str(err) or "could not parse")
    return deserialize


def _lenient_handlers(handlers: dict) -> dict:
    return {name: h._replace(request_deserializer=_lenient(h.request_deserializer)) if h.request_deserializer
            else h for name, h in handlers.items()}


class _LenientServer:
    """The server as the generated registration sees it: handlers pass through `_lenient` on their way in."""

    def __init__(self, server):
        self._server = server

    def add_generic_rpc_handlers(self, generic_handlers) -> None:
        for handler in generic_handlers:
            handler._method_handlers = _lenient_handlers(handler._method_handlers)
        self._server.add_generic_rpc_handlers(generic_handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict) -> None:
        add = getattr(self._server, "add_registered_method_handlers", None)
        if add is not None:
            add(service, _lenient_handlers(handlers))


def add_GRPCInferenceServiceServicer_to_server(servicer, server) -> None:  # noqa: N802 - the name Ray expects
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, _LenientServer(server))


GRPC_SERVICER = f"{__name__}.add_GRPCInferenceServiceServicer_to_server"
