"""OpenTelemetry traces, one per request: a server span where the request arrives (HTTP, gRPC), the dataplane's
spans under it (the request's model or pipeline, each pipeline node, each model call with its version and queue
position), exported over OTLP when configured. A W3C `traceparent` from the client makes the request's spans part
of the client's trace; the trace id goes back in `X-Trace-Id` (gRPC: trailing metadata `x-trace-id`).

Only the OpenTelemetry API is used on the request path (a no-op until `configure` sets an SDK provider), so the
core stays free of exporters; `configure` is called once per process (the ingress replica).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACE_HEADER = "x-trace-id"
_PROPAGATOR = TraceContextTextMapPropagator()
tracer = trace.get_tracer("inference-gateway")


def parent_context(carrier: Mapping[str, str]):
    """The client's trace context from a `traceparent` header (or gRPC metadata), if it sent one."""
    return _PROPAGATOR.extract({k.lower(): v for k, v in carrier.items()})


def trace_id(span) -> str | None:
    """The 32-hex trace id of a recording span (None when tracing is off)."""
    ctx = span.get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None


def configure(settings) -> None:
    """An SDK tracer provider for this process, sampling `settings.sample_ratio` of new traces (a sampled
    parent is followed), exporting over OTLP/HTTP to `settings.otlp_endpoint` or OTEL_EXPORTER_OTLP_ENDPOINT.
    Without either, spans are still made (the trace id is returned to clients) and dropped."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return  # once per process
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}),
                              sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)))
    endpoint = settings.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        url = endpoint if endpoint.rstrip("/").endswith("/v1/traces") else endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    trace.set_tracer_provider(provider)
