"""serveConfigV2: generated from configs/gateway.yaml (never stale), valid for Ray Serve, every import path
imports, and the application builders it names start the same applications `gateway run` would."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import yaml
from support.fakes import FakeRegistry

from deployments.k8s_builders import gateway_application, version_application
from serve_app.config import parse_config
from serve_app.ops import k8s_render
from serve_app.plan import declared_versions, deployment_options, replica_options, selector_slug

REPO = Path(__file__).resolve().parents[3]


def serve_configs() -> dict[str, dict]:
    out = {}
    for folder in k8s_render.SERVE_CONFIG_DIRS:
        patch = yaml.safe_load((REPO / folder / "serve-config.yaml").read_text())
        out[str(folder)] = yaml.safe_load(patch["spec"]["serveConfigV2"])
    return out


def import_attr(path: str):
    module, _, attr = path.replace(":", ".").rpartition(".")
    return getattr(importlib.import_module(module), attr)


def test_generated_files_match_a_fresh_render():
    for rel, text in k8s_render.rendered().items():
        committed = (REPO / rel).read_text() if (REPO / rel).exists() else "<missing>"
        assert committed == text, f"{rel} is stale: run `make k8s` (configs/gateway.yaml or an override changed)"


def test_render_ignores_the_environment_of_the_machine_running_it(monkeypatch):
    before = k8s_render.rendered()
    monkeypatch.setenv("GATEWAY_HTTP_PORT", "8123")
    monkeypatch.setenv("GATEWAY_NUM_GPUS", "2")
    assert k8s_render.rendered() == before


def test_serve_configs_validate_with_rays_schema_and_every_import_path_imports():
    from ray.serve.schema import ServeDeploySchema

    for where, config in serve_configs().items():
        schema = ServeDeploySchema.model_validate(config)
        assert [a.name for a in schema.applications][-1] == "gateway", where
        for app in config["applications"]:
            builder = import_attr(app["import_path"])
            # Ray calls an application builder with exactly one argument, the args mapping.
            assert len(inspect.signature(builder).parameters) == 1, app["import_path"]
        for servicer in config["grpc_options"]["grpc_servicer_functions"]:
            assert callable(import_attr(servicer))


def test_applications_follow_the_gateway_config_and_carry_autoscaling():
    gateway = parse_config(yaml.safe_load((REPO / "configs" / "gateway.yaml").read_text()))
    for where, config in serve_configs().items():
        apps = {a["name"]: a for a in config["applications"]}
        merged = parse_config(apps["gateway"]["args"]["config"])
        assert [m.name for m in merged.models] == [m.name for m in gateway.models], where
        assert merged.pipelines == gateway.pipelines, where
        assert set(apps) == {d.app_name for d in declared_versions(merged)} | {"gateway"}, where
        assert apps["gateway"]["route_prefix"] == "/"
        for d in declared_versions(merged):
            app = apps[d.app_name]
            assert app["route_prefix"] is None  # reached through handles only, as in `gateway run`
            model = parse_config(app["args"]["config"]).models[0]
            assert model == merged.model(d.model)
            assert app["deployments"] == [{"name": model.name, **replica_options(model.resources)}]
        autoscaled = [a for a in apps.values() if "autoscaling_config" in (a.get("deployments") or [{}])[0]]
        assert autoscaled, f"{where}: no model autoscales"
        for app in autoscaled:
            from ray.serve.config import AutoscalingConfig

            cfg = AutoscalingConfig(**app["deployments"][0]["autoscaling_config"])
            assert 1 <= cfg.min_replicas < cfg.max_replicas


def test_overrides_merge_by_model_name_and_refuse_unknown_models():
    base = {"models": [{"name": "a", "task": "identity", "resources": {"num_cpus": 0.2}}], "server": {"x": 1}}
    merged = k8s_render.merge_overrides(base, {"models": {"a": {"resources": {"replicas": 3}}}, "server": {"y": 2}})
    assert merged["models"][0]["resources"] == {"num_cpus": 0.2, "replicas": 3}
    assert merged["server"] == {"x": 1, "y": 2} and base["models"][0]["resources"] == {"num_cpus": 0.2}
    with pytest.raises(ValueError, match="'b'"):
        k8s_render.merge_overrides(base, {"models": {"b": {}}})


def test_selector_slugs_are_safe_application_names():
    assert [selector_slug(s) for s in ("7", "stable", "sha256:3fa1", "2026-11-26T10:00:00Z")] == \
        ["v7", "stable", "sha256-3fa1", "2026-11-26t10-00-00z"]


CONFIG = {
    "registry": {"uri": "s3://bucket/registry"},
    "models": [
        {"name": "clf", "task": "classification", "traffic": {"stable": 80, "3": 10, "canary": 10},
         "resources": {"num_cpus": 0.25, "num_gpus": "auto",
                       "autoscaling": {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 4}}},
        {"name": "echo", "task": "identity", "delay_ms": 5, "resources": {"num_cpus": 0.1}},
    ],
}


def test_version_builder_resolves_its_selector_and_sets_the_rendered_options():
    app = version_application({"config": {**CONFIG, "models": [CONFIG["models"][0]]}, "selector": "canary", "gpus": 1},
                        registry=FakeRegistry())
    deployment = app._bound_deployment
    model = parse_config(CONFIG).models[0]
    expected = deployment_options(model, 1)
    assert deployment.name == "clf"
    assert deployment.ray_actor_options == {"num_cpus": 0.25, "num_gpus": 1.0}  # auto + a GPU cluster
    assert deployment._deployment_config.autoscaling_config.max_replicas == 3
    assert deployment._deployment_config.autoscaling_config.target_ongoing_requests == 4
    assert "num_replicas" not in expected
    spec = deployment.init_args[0]
    assert spec["iteration"] == 4 and spec["registry"]["uri"] == "s3://bucket/registry"


def test_gateway_builder_routes_to_the_declared_apps_with_merged_weights():
    app = gateway_application({"config": CONFIG, "gpus": 0}, registry=FakeRegistry())
    config, table, gpus = app._bound_deployment.init_args
    assert gpus == 0.0 and config["models"][0]["name"] == "clf"
    routing = ("label", "app", "deployment", "weight")
    assert [{k: v[k] for k in routing} for v in table["clf"]] == [
        {"label": "3", "app": "clf--stable", "deployment": "clf", "weight": 90.0},  # stable and 3: one version
        {"label": "4", "app": "clf--canary", "deployment": "clf", "weight": 10.0},
    ]
    # The ingress also learns each version's content hash (response cache keys) in the cluster.
    assert table["clf"][0]["content_hash"].endswith("3") and table["clf"][1]["content_hash"].endswith("4")
    assert table["echo"] == [{"label": "builtin", "app": "echo--builtin", "deployment": "echo", "weight": 1.0}]
    declared = {d.app_name for d in declared_versions(parse_config(CONFIG))}
    assert {e["app"] for entries in table.values() for e in entries} <= declared


def test_selection_variants_reach_the_cluster_as_applications_of_their_own():
    raw = {"models": [{"name": "clf", "task": "classification", "version": "stable",
                       "selection": {"variants": ["fast", "small"], "on_unmet": "refuse"},
                       "cache": {"max_bytes": 1 << 20, "ttl_s": 60}, "resources": {"num_cpus": 0.25}}]}
    config = k8s_render.serve_config(raw, gpus=0)
    apps = {a["name"]: a for a in config["applications"]}
    # The configured version and each variant start as their own application, as `gateway run` starts them.
    assert set(apps) == {"clf--stable", "clf--fast", "clf--small", "gateway"}
    assert [apps[f"clf--{s}"]["args"]["selector"] for s in ("stable", "fast", "small")] == ["stable", "fast", "small"]
    # The ingress gets the selection and cache settings through its args (serveConfigV2 carries them).
    model = parse_config(apps["gateway"]["args"]["config"]).models[0]
    assert model.selection.variants == ["fast", "small"] and model.selection.on_unmet == "refuse"
    assert model.cache.max_bytes == 1 << 20 and model.cache.ttl_s == 60
    assert model.selectors == {"stable": 1.0, "fast": 0.0, "small": 0.0}  # variants take no traffic-split share
