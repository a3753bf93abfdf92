"""The OIP gRPC stubs that tritonclient ships, importable under the module name their messages claim.

tritonclient's generated classes say they live in `grpc_service_pb2`; Ray pickles requests and responses
between its gRPC proxy and the replicas, which needs that name importable in both. Ray's proxy imports this
module (see GRPC_SERVICER below), and so do the replicas, so the alias exists wherever it is needed.
"""

import sys

from tritonclient.grpc import service_pb2, service_pb2_grpc

sys.modules.setdefault("grpc_service_pb2", service_pb2)

add_GRPCInferenceServiceServicer_to_server = service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server
GRPC_SERVICER = f"{__name__}.add_GRPCInferenceServiceServicer_to_server"
RPC_NAMES = list(service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name)
