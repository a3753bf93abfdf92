"""What the dataplane records: counts by model/version/pipeline, errors by kind, bounded labels, latencies."""

import asyncio

import pytest

from serve_app.config import parse_config
from serve_app.dataplane import DataPlane
from serve_app.errors import GatewayError
from serve_app.metrics import METRICS, MemoryMetrics
from serve_app.routing import ModelRoutes
from serve_app.settings import GatewaySettings

CONFIG = {
    "models": [{"name": "clf", "task": "classification", "source": "c"},
               {"name": "sum", "task": "summarization", "source": "s"}],
    "pipelines": [{"name": "stc", "graph": {"type": "chain", "steps": [
        {"node": {"type": "model", "model": "sum"}},
        {"node": {"type": "model", "model": "clf"}, "input": "summary"}]}}],
}


class Fake:
    def __init__(self, task):
        self.task = task

    async def infer(self, texts, params):
        if self.task == "sum":
            return {"version": "2", "results": [{"summary": t} for t in texts]}
        return {"version": "5", "results": [{"label": "a", "probabilities": {"a": 1.0}} for _ in texts]}

    async def info(self):
        return {}


def dataplane():
    metrics = MemoryMetrics()
    routes = {"clf": ModelRoutes("clf"), "sum": ModelRoutes("sum")}
    routes["clf"].add("5", Fake("clf"), 1.0)
    routes["sum"].add("2", Fake("sum"), 1.0)
    return DataPlane(parse_config(CONFIG, settings=GatewaySettings()), routes, metrics=metrics), metrics


def test_requests_errors_and_latencies_are_recorded_with_bounded_labels():
    dp, m = dataplane()

    async def traffic():
        for _ in range(3):
            await dp.classify({"texts": ["x"]})
        await dp.run_pipeline("stc", {"texts": ["y", "z"]})
        for bad in ({"texts": []}, {"texts": ["x"], "model": "attacker-chosen-name"}, "not an object"):
            with pytest.raises(GatewayError):
                await dp.classify(bad)
    asyncio.run(traffic())

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
