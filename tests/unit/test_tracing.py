"""OpenTelemetry traces in process (serve_app/tracing.py), collected by the SDK's in-memory exporter: one trace per
request with the client's `traceparent` honoured, parent-child intact from the server span through the dataplane
and every pipeline node to each model call, the trace id returned over HTTP and gRPC."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support.fakes import chain_dataplane
from support.inprocess import request
from support.servers import Servicer, grpc_call

from serve_app.config.server import Tracing
from serve_app.errors import Overloaded
from serve_app.protocols.grpc_stubs import service_pb2 as pb
from serve_app.tracing import configure, provider, span

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def spans():
    configure(Tracing(sample_ratio=1.0))  # the SDK provider the ingress sets (no exporter configured)
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


def tree(finished) -> dict[str, list[str]]:
    """span name -> names of its children."""
    by_id = {s.context.span_id: s for s in finished}
    out: dict[str, list[str]] = {s.name: [] for s in finished}
    for s in finished:
        if s.parent is not None and s.parent.span_id in by_id:
            out[by_id[s.parent.span_id].name].append(s.name)
    return out


def test_a_pipeline_request_is_one_trace_under_the_clients_with_every_hop(spans):
    spans.clear()
    r = request("POST", "/v1/pipelines/stc", dp=chain_dataplane(), json={"texts": ["abc"]},
                headers={"traceparent": TRACEPARENT})
    assert r.status_code == 200 and r.headers["x-trace-id"] == CLIENT_TRACE
    finished = spans.get_finished_spans()
    assert {f"{s.context.trace_id:032x}" for s in finished} == {CLIENT_TRACE}
    server = next(s for s in finished if s.name == "POST /v1/pipelines/stc")
    assert server.parent.span_id == int("00f067aa0ba902b7", 16) and server.kind == trace.SpanKind.SERVER
    children = tree(finished)
    assert children["POST /v1/pipelines/stc"] == ["gateway.request"]
    assert children["gateway.request"] == ["gateway.pipeline_node"]  # the graph, whose steps are its children
    nodes = {s.attributes["gateway.node"]: s for s in finished if s.name == "gateway.pipeline_node"}
    assert set(nodes) == {"graph", "graph.steps[0]", "graph.steps[1]"}
    for step, model, version in (("graph.steps[0]", "sum", "2"), ("graph.steps[1]", "clf", "5")):
        assert nodes[step].parent.span_id == nodes["graph"].context.span_id
        [call] = [s for s in finished if s.name == "gateway.model_call" and s.parent.span_id
                  == nodes[step].context.span_id]
        assert call.attributes["gateway.model"] == model and call.attributes["gateway.version"] == version
        assert call.attributes["gateway.queue_ahead"] == 0


def test_a_request_without_traceparent_starts_its_own_trace_and_errors_are_marked(spans):
    spans.clear()
    dp = chain_dataplane()
    r = request("POST", "/v1/classify", dp=dp, json={"texts": ["x"], "model": "clf"})
    tid = r.headers["x-trace-id"]
    assert len(tid) == 32 and tid != CLIENT_TRACE
    r = request("POST", "/v1/classify", dp=dp, json={"texts": ["x"], "model": "nope"})
    failed = next(s for s in spans.get_finished_spans() if s.name == "gateway.request"
                  and f"{s.context.trace_id:032x}" == r.headers["x-trace-id"])
    assert failed.attributes["gateway.error"] == "model_not_found"
    assert not failed.events and failed.status.is_unset  # a 404 is an answer: no stack formatted, no error status
    assert "x-trace-id" not in request("GET", "/healthz", dp=dp).headers  # probes are not traced


def test_grpc_honours_traceparent_metadata_and_returns_the_trace_id(spans):
    spans.clear()
    req = pb.ModelInferRequest(model_name="clf")
    req.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"x")
    ctx, _ = grpc_call(Servicer(chain_dataplane()), "ModelInfer", req, [("traceparent", TRACEPARENT)])
    assert ctx.code is None and dict(ctx.trailing)["x-trace-id"] == CLIENT_TRACE
    finished = spans.get_finished_spans()
    server = next(s for s in finished if s.name == "grpc ModelInfer")
    assert tree(finished)["grpc ModelInfer"] == ["gateway.request"]
    assert tree(finished)["gateway.request"] == ["gateway.model_call"]
    assert server.kind == trace.SpanKind.SERVER


def test_ray_tracing_is_switched_on_only_where_spans_are_exported(tmp_path):
    from serve_app.tracing import OTLP_ENV, RAY_EXPORTER, SPAN_DIR_ENV, ray_tracing_env

    env: dict[str, str] = {}
    assert not ray_tracing_env(Tracing(), env) and env == {}
    assert ray_tracing_env(Tracing(otlp_endpoint="http://collector:4318", sample_ratio=0.1), env)
    assert env == {"RAY_SERVE_TRACING_EXPORTER_IMPORT_PATH": RAY_EXPORTER,
                   "RAY_SERVE_TRACING_SAMPLING_RATIO": "0.1", OTLP_ENV: "http://collector:4318"}
    folder_only = {SPAN_DIR_ENV: str(tmp_path)}
    assert ray_tracing_env(Tracing(sample_ratio=0.0), folder_only)
    assert folder_only["RAY_SERVE_TRACING_SAMPLING_RATIO"] == "0.0" and OTLP_ENV not in folder_only


def test_the_span_folder_gets_each_finished_span_as_a_json_line(tmp_path):
    import json

    from serve_app.tracing import SPAN_DIR_ENV

    tracer = provider(Tracing(sample_ratio=1.0), env={SPAN_DIR_ENV: str(tmp_path)}).get_tracer("t")
    with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner"):
        pass
    [path] = tmp_path.glob("*.jsonl")
    spans = [json.loads(line) for line in path.read_text().splitlines()]
    assert [s["name"] for s in spans] == ["inner", "outer"]
    assert spans[0]["parent_id"] == spans[1]["context"]["span_id"]


def test_a_typed_error_is_noted_cheaply_and_an_unexpected_one_keeps_its_stack(spans):
    """Shedding under overload raises Overloaded on every refused request: its span notes the kind without
    formatting a traceback; a bug (any other exception) is recorded with its stack and an error status."""
    spans.clear()
    with pytest.raises(Overloaded), span("shed"):
        raise Overloaded("at capacity", retry_after_s=0.5)
    with pytest.raises(ZeroDivisionError), span("bug"):
        1 / 0  # noqa: B018
    shed, bug = spans.get_finished_spans()
    assert shed.attributes["gateway.error"] == "overloaded" and not shed.events and shed.status.is_unset
    assert bug.status.status_code == trace.StatusCode.ERROR
    [event] = bug.events
    assert event.name == "exception" and "ZeroDivisionError" in event.attributes["exception.stacktrace"]


def test_without_an_exporter_nothing_is_recorded_but_the_trace_id_still_comes_back():
    """Spans that go nowhere cost CPU per request and keep requests out of the ingress' merged (class-ordered)
    model calls: with no endpoint and no span folder, the sampler records nothing, yet each span has a trace id
    (the client's where it sent a traceparent), so X-Trace-Id still names one."""
    tracer = provider(Tracing(sample_ratio=1.0), env={}).get_tracer("test")
    with tracer.start_as_current_span("request") as own:
        assert not own.is_recording() and own.get_span_context().is_valid
    from serve_app.tracing import parent_context
    with tracer.start_as_current_span("request", context=parent_context({"traceparent": TRACEPARENT})) as child:
        assert not child.is_recording() and f"{child.get_span_context().trace_id:032x}" == CLIENT_TRACE
    exported = provider(Tracing(sample_ratio=1.0), env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    with exported.get_tracer("test").start_as_current_span("request") as sampled:
        assert sampled.is_recording()
    exported.shutdown()
