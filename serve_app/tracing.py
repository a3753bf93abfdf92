"""OpenTelemetry traces, one per request: a server span where the request arrives (HTTP, gRPC), the dataplane's
spans under it (the request's model or pipeline, each pipeline node, each model call with its version and queue
position), exported over OTLP when configured. A W3C `traceparent` from the client makes the request's spans part
of the client's trace; the trace id goes back in `X-Trace-Id` (gRPC: trailing metadata `x-trace-id`).

Only the OpenTelemetry API is used on the request path (a no-op until `configure` sets an SDK provider), so the
core stays free of exporters; `configure` is called once per process (the ingress replica).

Across processes, Ray Serve's own tracing carries the context: switched on (`ray_tracing_env`, before Ray starts)
wherever spans are exported, every Serve process (proxy, ingress, model replicas) gets a provider whose processors
come from `ray_span_processors`, and a handle call takes the caller's current context to the replica, so a model
replica's spans are children of the ingress span that called it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACE_HEADER = "x-trace-id"
RAY_EXPORTER = "serve_app.tracing:ray_span_processors"
OTLP_ENV = "GATEWAY_TRACING_OTLP_ENDPOINT"  # where Ray's processes export (set from the config by the CLI)
SPAN_DIR_ENV = "GATEWAY_TRACING_SPAN_DIR"  # every process appends its finished spans here as JSON lines (tests)
_PROPAGATOR = TraceContextTextMapPropagator()
tracer = trace.get_tracer("inference-gateway")


@contextmanager
def span(name: str, **options) -> Iterator[trace.Span]:
    """`tracer.start_as_current_span`, noting an error that passes as attributes, not as a traceback: OTel's
    default `record_exception` formats the stack (parsing source lines), milliseconds that every request shed
    under overload would pay on the ingress' event loop. A typed gateway error names its kind and status; only an
    unexpected exception (a 500) keeps its stack. Following OTel's HTTP conventions, a 4xx leaves the span's
    status unset: the server worked, the request was refused."""
    from serve_app.errors import GatewayError

    with tracer.start_as_current_span(name, record_exception=False, set_status_on_exception=False,
                                      **options) as current:
        try:
            yield current
        except GatewayError as err:
            current.set_attributes({"gateway.error": err.kind, "error.type": type(err).__name__})
            if err.http_status >= 500:
                current.set_status(Status(StatusCode.ERROR, err.kind))
            raise
        except Exception as err:
            current.record_exception(err)
            current.set_status(Status(StatusCode.ERROR, type(err).__name__))
            raise


def parent_context(carrier: Mapping[str, str]):
    """The context a request's server span continues: Ray Serve's span for the request where Ray's tracing is on
    (it already continues the client's `traceparent`), else the client's `traceparent` (or gRPC metadata)."""
    if trace.get_current_span().get_span_context().is_valid:
        return None  # the current context
    return _PROPAGATOR.extract({k.lower(): v for k, v in carrier.items()})


def trace_id(span) -> str | None:
    """The 32-hex trace id of a recording span (None when tracing is off)."""
    ctx = span.get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None


def configure(settings) -> None:
    """Set this process's tracer provider (`provider`), once."""
    from opentelemetry.sdk.trace import TracerProvider

    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(provider(settings))


def provider(settings, env: Mapping[str, str] = os.environ):
    """An SDK tracer provider sampling `settings.sample_ratio` of new traces (a sampled parent is followed),
    exporting over OTLP/HTTP to `settings.otlp_endpoint` or OTEL_EXPORTER_OTLP_ENDPOINT.
    Where spans go nowhere (no endpoint, no span folder) nothing is recorded: spans still carry a trace id (the
    client's, or a new one) for X-Trace-Id, but a recording span costs CPU on every request and takes a model call
    of its own instead of a merged one (deployments/handles.py), which under load also bypasses the class order
    of the ingress' queue (dataplane/batching.py)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased

    processors = span_processors(settings.otlp_endpoint or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
                                 env.get(SPAN_DIR_ENV))
    sampler = ParentBased(TraceIdRatioBased(settings.sample_ratio)) if processors else ALWAYS_OFF
    made = TracerProvider(resource=Resource.create({"service.name": settings.service_name}), sampler=sampler)
    for processor in processors:
        made.add_span_processor(processor)
    return made


def span_processors(endpoint: str | None, folder: str | None = None) -> list:
    """OTLP/HTTP export to `endpoint` (batched); and, given a `folder` (GATEWAY_TRACING_SPAN_DIR), every finished
    span as a JSON line in `<folder>/<pid>.jsonl`."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    processors = []
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        url = endpoint if endpoint.rstrip("/").endswith("/v1/traces") else endpoint.rstrip("/") + "/v1/traces"
        processors.append(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    if folder:
        out = open(os.path.join(folder, f"{os.getpid()}.jsonl"), "a", buffering=1)  # noqa: SIM115 - the process's
        processors.append(SimpleSpanProcessor(ConsoleSpanExporter(
            out=out, formatter=lambda span: span.to_json(indent=None) + "\n")))
    return processors


def ray_span_processors() -> list:
    """Ray Serve's tracing exporter hook (RAY_SERVE_TRACING_EXPORTER_IMPORT_PATH): called in each Serve process."""
    return span_processors(os.environ.get(OTLP_ENV) or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
                           os.environ.get(SPAN_DIR_ENV))


def ray_tracing_env(settings, env: MutableMapping[str, str] = os.environ) -> bool:
    """Switch Ray Serve's tracing on for a Ray started after this (its processes read the variables when they
    import Serve), where spans have somewhere to go: an OTLP endpoint, or a span folder. Returns whether on."""
    endpoint = settings.otlp_endpoint or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not (endpoint or env.get(SPAN_DIR_ENV)):
        return False
    env.setdefault("RAY_SERVE_TRACING_EXPORTER_IMPORT_PATH", RAY_EXPORTER)
    env.setdefault("RAY_SERVE_TRACING_SAMPLING_RATIO", str(settings.sample_ratio))
    if endpoint:
        env.setdefault(OTLP_ENV, endpoint)
    return True
