"""In-process stand-ins for served models, shared by the unit tests of the dataplane and its protocols."""

from __future__ import annotations

from serve_app.config import parse_config
from serve_app.dataplane import DataPlane
from serve_app.dataplane.routing import ModelRoutes
from serve_app.config.settings import GatewaySettings

# A classifier "clf" (version 5), a summarizer "sum" (version 2), and the pipeline "stc" chaining them.
CHAIN_CONFIG = {
    "models": [{"name": "clf", "task": "classification", "source": "c"},
               {"name": "sum", "task": "summarization", "source": "s"}],
    "pipelines": [{"name": "stc", "graph": {"type": "chain", "steps": [
        {"node": {"type": "model", "model": "sum"}},
        {"node": {"type": "model", "model": "clf"}, "input": "summary"}]}}],
}
VERSIONS = {"clf": "5", "sum": "2"}


class FakeModel:
    """Summaries are the text upper-cased; the topic is "b" when the text holds a b, else "a"."""

    def __init__(self, name: str):
        self.name = name

    async def infer(self, texts, params):
        if self.name == "sum":
            return {"version": VERSIONS["sum"], "results": [{"summary": t.upper(), "truncated": False}
                                                            for t in texts]}
        return {"version": VERSIONS["clf"], "results": [
            {"label": "b" if "b" in t.lower() else "a", "score": 0.75, "truncated": False, "input_tokens": len(t),
             "probabilities": {"a": 0.25, "b": 0.75} if "b" in t.lower() else {"a": 0.75, "b": 0.25}}
            for t in texts]}

    async def info(self):
        return {}


def chain_dataplane(metrics=None) -> DataPlane:
    routes = {}
    for name, version in VERSIONS.items():
        routes[name] = ModelRoutes(name)
        routes[name].add(version, FakeModel(name), 1.0)
    return DataPlane(parse_config(CHAIN_CONFIG, settings=GatewaySettings()), routes, metrics=metrics)
