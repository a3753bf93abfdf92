"""Version routing (pins, traffic split) and the admin endpoints over in-process fakes."""

import asyncio
import random
from collections import Counter

import httpx
import pytest
from support.fakes import FakeBackend, FakeManager

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.dataplane import DataPlane
from serve_app.dataplane.routing import ModelRoutes
from serve_app.errors import InvalidInput, ModelNotFound, ModelNotReady
from serve_app.protocols.http_app import create_app


def test_split_shares_follow_weights_and_pins_bypass_them():
    routes = ModelRoutes("m", rng=random.Random(7))
    routes.add("1", FakeBackend("1"), 90)
    routes.add("2", FakeBackend("2"), 10)
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
    routes.add("1", FakeBackend("1"), 0)
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
    routes["clf"].add("1", FakeBackend("1"), 1.0)
    routes["plain"].add("sha256:abc", FakeBackend("sha256:abc"), 1.0)
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


def registry_client(tmp_path, traffic=None):
    """A dataplane over a registry model `clf` whose versions 1 and 2 exist in a real (temporary) registry."""
    from serve_app.registry import Registry

    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    reg = Registry(str(tmp_path / "store"), cache_dir=tmp_path / "cache")
    for _ in range(3):
        reg.register("clf", folder)
    reg.set_alias("clf", "stable", "1")
    reg.set_alias("clf", "canary", "3")
    model = {"name": "clf", "task": "classification", **({"traffic": traffic} if traffic else {"version": "1"})}
    config = parse_config({"registry": {"uri": str(tmp_path / "store")}, "models": [model],
                           "pipelines": [{"name": "twice", "graph": {"type": "fanout", "branches": {
                               "a": {"type": "model", "model": "clf"}, "b": {"type": "model", "model": "clf"}}}}]},
                          settings=GatewaySettings())
    routes = {"clf": ModelRoutes("clf")}
    for label, weight in (traffic or {"1": 1}).items():
        routes["clf"].add(label, FakeBackend(label), float(weight))
    dp = DataPlane(config, routes, FakeManager(registry=reg))
    app = create_app(lambda: dp)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def shares(r):
    return {v["version"]: v["traffic_share"] for v in r.json()["versions"]}


def test_unload_then_load_restores_the_configured_selection(tmp_path):
    """Loading back the only version left it deployed at 0% traffic: ready 503, every infer 503, while the
    index said READY. Load now restores the configured weights (or gives a version loaded while nothing else
    serves all the traffic); a canary loaded beside a serving version still takes none."""
    async def go():
        async with registry_client(tmp_path) as c:
            assert (await c.post("/v1/admin/models/clf/versions/1/unload")).status_code == 200
            assert (await c.get("/v2/models/clf/ready")).status_code == 503
            index = (await c.post("/v2/repository/index")).json()
            assert {e["version"]: e["state"] for e in index if e["name"] == "clf"} == {
                "1": "UNAVAILABLE", "2": "UNAVAILABLE", "3": "UNAVAILABLE"}
            assert {e["name"]: e["state"] for e in index}["twice"] == "UNAVAILABLE"
            r = await c.post("/v1/admin/models/clf/versions/1/load")
            assert shares(r) == {"1": 1.0}
            assert (await c.get("/v2/models/clf/ready")).status_code == 200
            assert (await c.post("/v1/classify", json={"texts": ["x"]})).status_code == 200
            r = await c.post("/v1/admin/models/clf/versions/2/load")  # a canary: no traffic yet
            assert shares(r) == {"1": 1.0, "2": 0.0}
            assert (await c.post("/v1/admin/models/clf/versions/1/unload")).status_code == 200
            index = {e["version"]: e for e in (await c.post("/v2/repository/index")).json() if e["name"] == "clf"}
            assert index["2"]["state"] == "UNAVAILABLE" and "no version of the model takes traffic" in \
                index["2"]["reason"], "never READY for a model that cannot answer"
            r = await c.post("/v1/admin/models/clf/versions/3/load")  # nothing takes traffic: it takes it all
            assert shares(r) == {"2": 0.0, "3": 1.0}
            index = {e["version"]: e["state"] for e in (await c.post("/v2/repository/index")).json()
                     if e["name"] == "clf"}
            assert index == {"1": "UNAVAILABLE", "2": "READY", "3": "READY"}
    run(go())


def test_oip_unload_all_then_load_without_a_version_brings_back_the_configured_split(tmp_path):
    async def go():
        async with registry_client(tmp_path, traffic={"1": 70, "2": 30}) as c:
            assert (await c.post("/v2/repository/models/clf/unload")).status_code == 200
            assert (await c.get("/v2/models/clf/ready")).status_code == 503
            assert (await c.get("/v2/models/twice/ready")).status_code == 503
            assert (await c.post("/v2/repository/models/clf/load")).status_code == 200
            assert shares(await c.get("/v1/models/clf")) == {"1": 0.7, "2": 0.3}
            assert (await c.get("/v2/models/twice/ready")).status_code == 200
            # One version of the split unloaded and loaded back: it gets its configured share again.
            await c.post("/v1/admin/models/clf/versions/2/unload")
            r = await c.post("/v2/repository/models/clf/load", json={"parameters": {"version": "2"}})
            assert r.status_code == 200 and shares(await c.get("/v1/models/clf")) == {"1": 0.7, "2": 0.3}
            # A split set by hand since is left alone: the loaded version waits for its weight.
            await c.put("/v1/admin/models/clf/traffic", json={"1": 1})
            await c.post("/v1/admin/models/clf/versions/2/unload")
            r = await c.post("/v1/admin/models/clf/versions/3/load")
            await c.post("/v1/admin/models/clf/versions/2/load")
            assert shares(await c.get("/v1/models/clf")) == {"1": 1.0, "2": 0.0, "3": 0.0}
    run(go())


def test_admin_calls_accept_registry_selectors_for_loaded_versions(tmp_path):
    """The README walkthrough says `canary`, not an iteration it cannot know on a fresh install."""
    async def go():
        async with registry_client(tmp_path) as c:
            assert shares(await c.post("/v1/admin/models/clf/versions/canary/load")) == {"1": 1.0, "3": 0.0}
            r = await c.put("/v1/admin/models/clf/traffic", json={"stable": 90, "canary": 10})
            assert r.status_code == 200 and shares(r) == {"1": 0.9, "3": 0.1}
            r = await c.put("/v1/admin/models/clf/traffic", json={"stable": 1, "1": 1})
            assert r.status_code == 400 and "twice" in r.json()["error"]
            r = await c.put("/v1/admin/models/clf/traffic", json={"ghost": 1})
            assert r.status_code == 400 and "not loaded" in r.json()["error"]
            r = await c.post("/v1/admin/models/clf/versions/canary/unload")
            assert r.status_code == 200 and shares(r) == {"1": 1.0}
    run(go())
