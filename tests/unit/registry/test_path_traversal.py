"""No path out of the store: through store paths, model selectors and the admin API."""

from __future__ import annotations

import pytest
from support.inprocess import CONFIG, classifier, request

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.dataplane import DataPlane
from serve_app.dataplane.routing import ModelRoutes
from serve_app.errors import InvalidInput
from serve_app.registry import Registry
from serve_app.registry.errors import SelectorError, UnsafeArtifactError
from serve_app.registry.store import open_store


# -- path traversal ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("parts", [("..",), ("clf", "..", ".."), ("../etc/passwd",), ("clf/../../x",), (".",),
                                   ("a\x00b",), ("/abs",)])
def test_store_paths_cannot_escape_the_store(tmp_path, parts):
    store = open_store(str(tmp_path / "store"))
    with pytest.raises(UnsafeArtifactError):
        store.path(*parts)


@pytest.mark.parametrize("selector", ["../../etc@1", "clf@../../etc", "clf/../x@1", "clf@sha256:../..",
                                      "clf@..", "..@1"])
def test_traversal_in_model_selectors_is_refused(tmp_path, selector):
    registry = Registry(str(tmp_path / "store"), cache_dir=tmp_path / "cache")
    with pytest.raises((SelectorError, UnsafeArtifactError, InvalidInput)):
        registry.resolve(selector)
    assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize("path", ["/v1/admin/models/clf/versions/..%2F..%2Fetc/load",
                                  "/v1/admin/models/clf/versions/1%2F..%2F..%2Fx/load",
                                  "/v1/admin/models/..%2F..%2Fetc/versions/1/load",
                                  "/v1/admin/models/clf/versions/..%5C..%5Cetc/load",
                                  "/v2/repository/models/..%2Fetc/load",
                                  "/v2/repository/models/clf/load"])  # the version ../../etc in the body
def test_traversal_through_the_admin_api_is_a_4xx(tmp_path, path):
    from deployments.manager import ServeModelManager

    config = parse_config({**CONFIG, "registry": {"uri": str(tmp_path / "store")}}, settings=GatewaySettings())
    routes = {"clf": ModelRoutes("clf")}
    routes["clf"].add("1", classifier(), 1.0)
    dp = DataPlane(config, routes, ServeModelManager(config, 0.0))
    r = request("POST", path, dp=dp, json={"parameters": {"version": "../../etc"}})
    assert 400 <= r.status_code < 500 and "error" in r.json(), r.text
    assert not (tmp_path / "etc").exists()
