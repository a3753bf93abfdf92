"""What the dataplane records: counts by model/version/pipeline, errors by kind, bounded labels, latencies."""

from fastapi.testclient import TestClient
from support.fakes import MemoryMetrics, chain_dataplane

from serve_app.metrics import METRICS
from serve_app.protocols.http_app import create_app


def dataplane():
    metrics = MemoryMetrics()
    return chain_dataplane(metrics), metrics


def test_requests_errors_and_latencies_are_recorded_with_bounded_labels():
    dp, m = dataplane()

    client = TestClient(create_app(lambda: dp))
    for _ in range(3):
        assert client.post("/v1/classify", json={"texts": ["x"]}).status_code == 200
    assert client.post("/v1/pipelines/stc", json={"texts": ["y", "z"]}).status_code == 200
    for bad in ({"texts": []}, {"texts": ["x"], "model": "attacker-chosen-name"}, "not an object"):
        assert client.post("/v1/classify", json=bad).status_code in (400, 404)

    assert m.total("gateway_requests", model="clf", version="5", pipeline="") == 3
    assert m.total("gateway_requests", model="clf", version="5", pipeline="stc") == 1
    assert m.total("gateway_requests", model="sum", version="2", pipeline="stc") == 1
    assert m.total("gateway_errors", kind="invalid_input") == 2
    assert m.total("gateway_errors", kind="model_not_found") == 1
    labels_seen = {v for _, _, labels, _ in m.records for v in labels.values()}
    assert "attacker-chosen-name" not in labels_seen, "client input must never become a label value"
    durations = [(lab, v) for op, n, lab, v in m.records if n == "gateway_request_duration_seconds"]
    assert [lab for lab, _ in durations] == [{"model": "clf", "pipeline": ""}] * 3 + [{"model": "", "pipeline": "stc"}]
    nodes = {lab["node"] for op, n, lab, _ in m.records if n == "gateway_pipeline_node_duration_seconds"}
    assert nodes == {"graph", "graph.steps[0]", "graph.steps[1]"}
    assert ("set", "gateway_loaded_versions", {"model": "clf"}, 1) in m.records


def test_every_metric_follows_prometheus_naming():
    for name, (kind, description, labels) in METRICS.items():
        assert name.startswith("gateway_") and description and labels
        assert not name.endswith("_total"), "Ray adds _total to counters itself"
        if kind == "histogram" and "duration" in name:
            assert name.endswith("_seconds")
