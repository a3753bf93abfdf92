"""serveConfigV2 deployed the way KubeRay deploys it (Serve's declarative `deploy_apps`, as its REST API does) on a
real local Ray: the builders import, resolve registry selectors inside Ray, and the ingress routes to the
applications the config names, with the config's traffic split."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
from support.tiny_models import build_tiny_classifier

from serve_app.ops import k8s_render
from serve_app.registry import Registry

CPU = {"num_cpus": 0.1, "num_gpus": 0}


def wait_running(names: set[str], timeout_s: float = 180) -> dict:
    from ray import serve

    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        apps = serve.status().applications
        statuses = {n: apps[n].status for n in names if n in apps}
        if len(statuses) == len(names) and all(s == "RUNNING" for s in statuses.values()):
            return statuses
        if any(s == "DEPLOY_FAILED" for s in statuses.values()):
            raise AssertionError({n: apps[n].message for n in statuses if apps[n].status == "DEPLOY_FAILED"})
        time.sleep(0.5)
    raise AssertionError(f"not all RUNNING within {timeout_s} s: {statuses}")


@pytest.fixture(scope="module")
def declared(serve_session, tmp_path_factory):
    from ray import serve
    from ray.serve.schema import ServeDeploySchema

    root = tmp_path_factory.mktemp("declared")
    reg = Registry(str(root / "store"), cache_dir=root / "cache")
    for seed in (1, 2):
        reg.register("tiny-clf", build_tiny_classifier(root / f"src{seed}", seed=seed))
    reg.set_alias("tiny-clf", "stable", "1")
    raw = {
        "registry": {"uri": str(root / "store"), "cache_dir": str(root / "cache")},
        "models": [
            {"name": "tiny-clf", "task": "classification", "traffic": {"stable": 50, "2": 50}, "max_length": 32,
             "resources": {**CPU, "autoscaling": {"min_replicas": 1, "max_replicas": 2}}},
            {"name": "echo", "task": "identity", "resources": CPU},
        ],
        "pipelines": [{"name": "both", "graph": {"type": "fanout", "branches": {
            "clf": {"type": "model", "model": "tiny-clf"}, "echo": {"type": "model", "model": "echo"}}}}],
    }
    config = k8s_render.serve_config(raw, gpus=0)
    for cluster_wide in ("proxy_location", "http_options", "grpc_options"):  # this session's Serve set them
        config.pop(cluster_wide)
    names = {a["name"] for a in config["applications"]}
    serve.context._get_global_client().deploy_apps(ServeDeploySchema.model_validate(config))
    try:
        wait_running(names)
        with httpx.Client(base_url=serve_session, timeout=60) as client:
            yield client, names
    finally:
        for name in serve.status().applications:
            serve.delete(name)


def test_every_declared_application_runs(declared):
    from ray import serve

    _, names = declared
    assert names == {"tiny-clf--stable", "tiny-clf--v2", "echo--builtin", "gateway"}
    deployment = serve.status().applications["tiny-clf--stable"].deployments["tiny-clf"]
    assert deployment.status == "HEALTHY"
    r = declared[0].get("/readyz")
    assert r.status_code == 200, r.text


def test_selectors_resolve_in_the_cluster_and_the_split_holds(declared):
    client, _ = declared
    seen = Counter()
    for _ in range(60):
        r = client.post("/v1/classify", json={"texts": ["some text"], "model": "tiny-clf"})
        assert r.status_code == 200, r.text
        seen[r.json()["version"]] += 1
    assert set(seen) == {"1", "2"}, seen  # stable -> 1 resolved by the builder; 2 pinned
    assert all(n >= 10 for n in seen.values()), seen  # 50/50 over 60 draws


def test_pipelines_of_the_config_run(declared):
    client, _ = declared
    r = client.post("/v1/pipelines/both", json={"texts": ["hello"]})
    assert r.status_code == 200, r.text
    assert set(r.json()["results"][0]["branches"]) == {"clf", "echo"}
