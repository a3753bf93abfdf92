"""Version routing (pins, traffic split) and the admin endpoints over in-process fakes."""

import asyncio
import random
from collections import Counter

import httpx
import pytest

from serve_app.config import parse_config
from serve_app.dataplane import DataPlane
from serve_app.errors import InvalidInput, ModelNotFound, ModelNotReady
from serve_app.http_api import create_app
from serve_app.routing import ModelRoutes
from serve_app.settings import GatewaySettings


class Versioned:
    def __init__(self, label):
        self.label = label

    async def infer(self, texts, params):
        return {"version": self.label, "results": [{"label": "a"} for _ in texts]}

    async def info(self):
        return {"version": self.label}


class FakeManager:
    def __init__(self):
        self.loaded, self.unloaded = [], []

    async def load(self, model, selector):
        label = selector.removeprefix("v")
        self.loaded.append((model.name, selector))
        return label, Versioned(label)

    async def unload(self, model, label):
        self.unloaded.append((model.name, label))


def test_split_shares_follow_weights_and_pins_bypass_them():
    routes = ModelRoutes("m", rng=random.Random(7))
    routes.add("1", Versioned("1"), 90)
    routes.add("2", Versioned("2"), 10)
    counts = Counter(routes.pick().label for _ in range(4000))
    assert abs(counts["2"] / 4000 - 0.10) < 0.02
    assert routes.shares() == {"1": 0.9, "2": 0.1}
    assert routes.pick("2").label == "2"
    routes.set_weights({"2": 1})
    assert {routes.pick().label for _ in range(50)} == {"2"}


def test_routing_errors_are_typed():
    routes = ModelRoutes("m")
    with pytest.raises(ModelNotReady, match="no loaded version"):
        routes.pick()
    routes.add("1", Versioned("1"), 0)
    with pytest.raises(ModelNotReady, match="no version taking traffic"):
        routes.pick()
    with pytest.raises(ModelNotFound, match="version 9 of 'm' is not loaded; loaded: 1"):
        routes.pick("9")
    with pytest.raises(InvalidInput, match="not loaded"):
        routes.set_weights({"9": 1})
    with pytest.raises(InvalidInput, match="positive sum"):
        routes.set_weights({"1": 0})


CONFIG = {"models": [{"name": "clf", "task": "classification", "version": "1"},
                     {"name": "plain", "task": "classification", "source": "somewhere"}]}


def client(token=None):
    config = parse_config(CONFIG, settings=GatewaySettings())
    routes = {"clf": ModelRoutes("clf"), "plain": ModelRoutes("plain")}
    routes["clf"].add("1", Versioned("1"), 1.0)
    routes["plain"].add("sha256:abc", Versioned("sha256:abc"), 1.0)
    manager = FakeManager()
    dp = DataPlane(config, routes, manager)
    app = create_app(lambda: dp, admin_token=token)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t"), manager


def run(coro):
    return asyncio.run(coro)


def test_load_weight_pin_and_unload_a_version():
    async def go():
        c, manager = client()
        async with c:
            r = await c.post("/v1/admin/models/clf/versions/v2/load")
            assert r.status_code == 200, r.text
            shares = {v["version"]: v["traffic_share"] for v in r.json()["versions"]}
            assert shares == {"1": 1.0, "2": 0.0}, "a loaded version takes no traffic until weighted"
            r = await c.post("/v1/classify", json={"texts": ["x"], "model": "clf@2"})
            assert r.headers["x-model-version"] == "2"
            r = await c.put("/v1/admin/models/clf/traffic", json={"2": 3, "1": 1})
            assert {v["version"]: v["traffic_share"] for v in r.json()["versions"]} == {"1": 0.25, "2": 0.75}
            r = await c.post("/v1/admin/models/clf/versions/2/unload")
            assert [v["version"] for v in r.json()["versions"]] == ["1"]
            r = await c.post("/v1/classify", json={"texts": ["x"], "model": "clf@2"})
            assert r.status_code == 404 and "not loaded" in r.json()["error"]
            assert manager.loaded == [("clf", "v2")] and manager.unloaded == [("clf", "2")]
    run(go())


@pytest.mark.parametrize("method, path, body, status, fragment", [
    ("post", "/v1/admin/models/plain/versions/2/load", None, 400, "served from a folder"),
    ("post", "/v1/admin/models/ghost/versions/2/load", None, 404, "'ghost' is not served"),
    ("post", "/v1/admin/models/clf/versions/7/unload", None, 404, "not loaded"),
    ("put", "/v1/admin/models/clf/traffic", b'{"1": "lots"}', 400, "version: weight"),
    ("put", "/v1/admin/models/clf/traffic", b"[]", 400, "version: weight"),
    ("put", "/v1/admin/models/clf/traffic", b'{"5": 1}', 400, "not loaded"),
    ("put", "/v1/admin/models/clf/traffic", b'{"1": -1}', 400, "positive sum"),
])
def test_admin_bad_requests(method, path, body, status, fragment):
    async def go():
        c, _ = client()
        async with c:
            return await c.request(method.upper(), path, content=body)
    r = run(go())
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]


def test_admin_token_is_required_when_configured():
    async def go():
        c, manager = client(token="s3cret")
        async with c:
            path = "/v1/admin/models/clf/versions/2/load"
            missing = await c.post(path)
            wrong = await c.post(path, headers={"Authorization": "Bearer nope"})
            right = await c.post(path, headers={"Authorization": "Bearer s3cret"})
            plain = await c.post("/v1/classify", json={"texts": ["x"]})  # inference stays open
            return missing, wrong, right, plain, manager
    missing, wrong, right, plain, manager = run(go())
    assert missing.status_code == 401 and "Bearer" in missing.json()["error"]
    assert wrong.status_code == 403 and "s3cret" not in wrong.text
    assert right.status_code == 200 and plain.status_code == 200
    assert manager.loaded == [("clf", "2")], "refused requests must not reach the manager"
