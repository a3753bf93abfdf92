"""T4 on a real Ray Serve: a traced request is one trace across processes (Ray Serve's tracing carries the
context from the ingress replica to each model replica), parent-child intact from the client's `traceparent`
to every model replica's span, over HTTP and gRPC, for a direct call and every node of a pipeline. Every Serve
process appends its spans to the session's span folder (tests/conftest.py), read back here."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from support.serve import gateway_fixture

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.tracing import SPAN_DIR_ENV

CPU = {"num_cpus": 0.1, "num_gpus": 0}
CLIENT_SPAN = "00f067aa0ba902b7"


def gateway_config(tiny_models):
    clf = {"task": "classification", "source": "tiny-classifier", "max_length": 32, "resources": CPU}
    return parse_config({
        "models": [{"name": "tiny-clf", **clf}, {"name": "tiny-clf2", **clf}],
        "pipelines": [{"name": "pair", "graph": {"type": "fanout", "branches": {
            "x": {"type": "model", "model": "tiny-clf"}, "y": {"type": "model", "model": "tiny-clf2"}}}}],
    }, settings=GatewaySettings(models_dir=tiny_models))


gateway = gateway_fixture(gateway_config)


def traceparent(trace_id: str) -> str:
    return f"00-{trace_id}-{CLIENT_SPAN}-01"


def spans_of(trace_id: str, needed: dict[str, int], within_s: float = 30) -> list[dict]:
    """The finished spans of one trace from every process's file (each with its `pid`), once `needed` (span name
    -> how many) are all there and no new span came in for a moment."""
    deadline, last = time.monotonic() + within_s, -1
    while True:
        found = []
        for path in Path(os.environ[SPAN_DIR_ENV]).glob("*.jsonl"):
            for line in path.read_text().splitlines():
                span = json.loads(line)
                if span["context"]["trace_id"] == f"0x{trace_id}":
                    found.append({**span, "pid": path.stem})
        names = [s["name"] for s in found]
        complete = all(names.count(name) >= n for name, n in needed.items())
        if (complete and len(found) == last) or time.monotonic() > deadline:
            return found
        last = len(found) if complete else -1
        time.sleep(0.5)


def check_tree(spans: list[dict]) -> dict[str, dict]:
    """Every span's parent is in the trace but the root's, which is the client's span: returns spans by id."""
    by_id = {s["context"]["span_id"]: s for s in spans}
    roots = [s for s in spans if s["parent_id"] not in by_id]
    assert [r["parent_id"] for r in roots] == [f"0x{CLIENT_SPAN}"], [(r["name"], r["parent_id"]) for r in roots]
    return by_id


def ancestors(span: dict, by_id: dict[str, dict]) -> list[dict]:
    out = []
    while span["parent_id"] in by_id:
        span = by_id[span["parent_id"]]
        out.append(span)
    return out


def replica_under_call(spans: list[dict], by_id: dict[str, dict]) -> list[tuple[dict, dict]]:
    """(model call span, model replica span) pairs: each replica span hangs under a model call of another
    process, and names the model, version, batch size and queue wait."""
    pairs = []
    for replica in (s for s in spans if s["name"] == "gateway.replica"):
        [call] = [a for a in ancestors(replica, by_id) if a["name"] == "gateway.model_call"]
        assert call["pid"] != replica["pid"]  # the hop crossed processes
        attrs = replica["attributes"]
        assert attrs["gateway.model"] == call["attributes"]["gateway.model"]
        assert attrs["gateway.version"] == call["attributes"]["gateway.version"]
        assert attrs["gateway.batch_size"] >= 1 and attrs["gateway.queue_wait_ms"] >= 0
        pairs.append((call, replica))
    return pairs


def test_an_http_call_is_one_trace_from_the_client_to_the_model_replica(gateway):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4701"
    r = gateway.post("/v1/classify", json={"texts": ["Markets rose."], "model": "tiny-clf"},
                     headers={"traceparent": traceparent(trace_id)})
    assert r.status_code == 200 and r.headers["x-trace-id"] == trace_id
    spans = spans_of(trace_id, {"POST /v1/classify": 1, "gateway.model_call": 1, "gateway.replica": 1})
    by_id = check_tree(spans)
    [(call, _)] = replica_under_call(spans, by_id)
    server = next(s for s in spans if s["name"] == "POST /v1/classify")
    assert server in ancestors(call, by_id)


def test_every_pipeline_node_reaches_its_model_replica_in_one_trace(gateway):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4702"
    r = gateway.post("/v1/pipelines/pair", json={"texts": ["Rates fell."]},
                     headers={"traceparent": traceparent(trace_id)})
    assert r.status_code == 200 and r.headers["x-trace-id"] == trace_id
    spans = spans_of(trace_id, {"gateway.pipeline_node": 3, "gateway.model_call": 2, "gateway.replica": 2})
    by_id = check_tree(spans)
    pairs = replica_under_call(spans, by_id)
    assert sorted(c["attributes"]["gateway.model"] for c, _ in pairs) == ["tiny-clf", "tiny-clf2"]
    for call, _ in pairs:  # each model call under its branch's node, under the graph's
        nodes = [a["attributes"]["gateway.node"] for a in ancestors(call, by_id)
                 if a["name"] == "gateway.pipeline_node"]
        assert nodes[-1] == "graph" and nodes[0] in ("graph.branches.x", "graph.branches.y"), nodes


def test_a_grpc_call_is_one_trace_too(gateway, grpc_target):
    import tritonclient.grpc as tg

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4703"
    inp = tg.InferInput("text", [1], "BYTES")
    inp.set_data_from_numpy(np.array([b"Markets rose."], dtype=np.object_))
    tg.InferenceServerClient(grpc_target).infer("tiny-clf", [inp], headers={"traceparent": traceparent(trace_id)})
    spans = spans_of(trace_id, {"grpc ModelInfer": 1, "gateway.model_call": 1, "gateway.replica": 1})
    by_id = check_tree(spans)
    [(call, _)] = replica_under_call(spans, by_id)
    assert any(a["name"] == "grpc ModelInfer" for a in ancestors(call, by_id))
