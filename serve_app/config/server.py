"""The server's configuration: ports, request limits, the ingress, and the registry it serves from."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from serve_app.config.model import Strict


class Limits(Strict):
    """Request limits, enforced before anything reaches a model."""

    max_texts: Annotated[int, Field(ge=1, le=10_000)] = 64
    max_text_chars: Annotated[int, Field(ge=1, le=10_000_000)] = 100_000
    max_body_bytes: Annotated[int, Field(ge=1024, le=1_073_741_824)] = 8 * 1024 * 1024
    # A JSON body's nesting and its number of values (array elements and object members, all levels), checked
    # right after parsing, before schemas or models: deeper or larger bodies are refused with a 400.
    max_json_depth: Annotated[int, Field(ge=4, le=1000)] = 32
    max_json_items: Annotated[int, Field(ge=100, le=100_000_000)] = 100_000
    # Deadline of a request that names none (X-Request-Timeout header / x-request-timeout gRPC metadata),
    # and the most a request may ask for (larger asks are cut to it). Past it: 504 / DEADLINE_EXCEEDED.
    request_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    max_request_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 300.0

    @model_validator(mode="after")
    def _default_within_max(self) -> Limits:
        if self.request_timeout_s > self.max_request_timeout_s:
            raise ValueError(f"request_timeout_s ({self.request_timeout_s}) is above max_request_timeout_s "
                             f"({self.max_request_timeout_s}); lower it or raise the maximum")
        return self


class Tracing(Strict):
    """OpenTelemetry traces of each request (serve_app/tracing.py), exported over OTLP/HTTP when `otlp_endpoint`
    (or OTEL_EXPORTER_OTLP_ENDPOINT) names a collector; without one nothing is recorded, and each request's trace
    id (the client's `traceparent`, or a new one) still comes back in X-Trace-Id."""

    otlp_endpoint: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    sample_ratio: Annotated[float, Field(ge=0, le=1)] = 1.0  # of traces started here (a client's flag is kept)
    service_name: Annotated[str, Field(min_length=1, max_length=200)] = "inference-gateway"


class HttpEdge(Strict):
    """Limits where HTTP requests arrive (Ray's proxy: serve_app/ops/http_edge.py). Past them: 431 (headers),
    400 (HTTP/1.1 without Host), 408 (a client too slow to send its headers, or its body), and the connection
    is closed."""

    max_header_bytes: Annotated[int, Field(ge=1024, le=1_048_576)] = 16 * 1024  # request line + headers
    max_headers: Annotated[int, Field(ge=8, le=10_000)] = 100
    header_timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0  # from connection (or first byte) to headers' end
    body_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0  # longest pause between two pieces of a body


class RegistryConfig(Strict):
    """Where registered versions live and where replicas cache them. S3 credentials: prefer the standard
    AWS environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) over writing them here."""

    uri: Annotated[str, Field(min_length=1)] = "registry"
    cache_dir: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    key: str | None = None
    secret: str | None = None

    def options(self) -> dict:
        return {k: v for k, v in self.model_dump(include={"endpoint_url", "region", "key", "secret"}).items() if v}


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    http_port: Annotated[int, Field(ge=1, le=65535)] = 8000
    # What listens on http_port: Ray Serve's proxy (`ray`), or HAProxy forwarding to the ingress replica's own
    # HTTP server (`haproxy`: less CPU per request, but a client that hangs up no longer cancels a unary model
    # call; see config/serve_env.py). Read when the gateway starts Ray (`gateway run`, the bench).
    http_front: Literal["ray", "haproxy"] = "ray"
    # OIP gRPC (inference.GRPCInferenceService) through Ray Serve's gRPC proxy; 0 turns it off.
    grpc_port: Annotated[int, Field(ge=0, le=65535)] = 9000
    limits: Limits = Limits()
    http_edge: HttpEdge = HttpEdge()
    tracing: Tracing = Tracing()
    ingress_num_cpus: Annotated[float, Field(gt=0, le=16)] = 0.1
    # Record gateway metrics through Ray (off: nothing is recorded; for measuring their overhead).
    metrics: bool = True
    # One access-log line per request at the ingress (Ray Serve's default is on). Off by default: the request
    # counters and latency histograms carry the same facts, and the line costs CPU on every request.
    access_log: bool = False
    # Ingress replicas behind Ray's proxy (or HAProxy). Each batches what it receives; admin changes go to the
    # routing state they share (Ray's GCS key-value store), seen by every replica within ~0.2 s.
    ingress_replicas: Annotated[int, Field(ge=1, le=64)] = 1
    # Where Ray Serve runs its HTTP/gRPC proxies: on every node (Ray's default; a load balancer in front of the
    # nodes), or only on the head. `auto`: every node, unless nodes share one host (one machine, where their
    # proxies would all want the same port). Read when the gateway starts Serve (`gateway run`).
    proxy_location: Literal["auto", "EveryNode", "HeadOnly"] = "auto"
