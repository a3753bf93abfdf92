"""How the config becomes Ray Serve deployment options (no cluster needed)."""

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.plan import deployment_options, model_spec, resolve_num_gpus


def test_auto_gpus_follow_the_cluster_and_explicit_values_are_kept():
    assert resolve_num_gpus("auto", 0) == 0.0
    assert resolve_num_gpus("auto", 4) == 1.0
    assert resolve_num_gpus(0.5, 0) == 0.5


def test_options_carry_fractional_cpus_and_a_queue_above_the_batch_size(tmp_path):
    config = parse_config({"models": [{"name": "c", "task": "classification", "source": "c",
                                       "batching": {"max_batch_size": 48},
                                       "resources": {"num_cpus": 0.25, "replicas": 2}}]},
                          settings=GatewaySettings(models_dir=tmp_path))
    opts = deployment_options(config.models[0], gpus_in_cluster=0)
    assert opts["ray_actor_options"] == {"num_cpus": 0.25, "num_gpus": 0.0}
    assert opts["num_replicas"] == 2 and opts["name"] == "c"
    assert opts["max_ongoing_requests"] == 96  # never below what one @serve.batch can take
    spec = model_spec(config, config.models[0])
    assert spec["path"] == str(tmp_path / "c") and spec["batching"]["max_batch_size"] == 48


def test_access_logs_are_off_on_model_hops_and_follow_the_config_at_the_ingress(tmp_path):
    from deployments.assemble import gateway_app

    models = [{"name": "c", "task": "identity", "resources": {"num_cpus": 0.1}}]
    quiet = parse_config({"models": models}, settings=GatewaySettings(models_dir=tmp_path))
    assert deployment_options(quiet.models[0], 0)["logging_config"] == {"enable_access_log": False}
    for flag in (False, True):
        config = parse_config({"server": {"access_log": flag}, "models": models},
                              settings=GatewaySettings(models_dir=tmp_path))
        ingress = gateway_app(config, [], 0.0)._bound_deployment
        assert ingress._deployment_config.logging_config["enable_access_log"] is flag


def multiplexed_config(tmp_path, **model):
    from serve_app.registry import Registry

    reg = Registry(str(tmp_path / "store"), cache_dir=tmp_path / "cache")
    for n in (1, 2):
        folder = tmp_path / f"v{n}"
        folder.mkdir()
        (folder / "config.json").write_text(f"{{\"n\": {n}}}")
        reg.register("m", folder)
    return parse_config({"registry": {"uri": str(tmp_path / "store"), "cache_dir": str(tmp_path / "cache")},
                         "models": [{"name": "m", "task": "classification", "traffic": {"1": 3, "2": 1},
                                     "multiplex": {"max_versions_per_replica": 2}, **model}]},
                        settings=GatewaySettings(models_dir=tmp_path))


def test_a_multiplexed_model_plans_one_application_whose_versions_are_model_ids(tmp_path):
    from deployments.apps import deployment_class
    from serve_app.plan import plan_versions, route_table

    config = multiplexed_config(tmp_path)
    plans = plan_versions(config)
    assert [(p.label, p.app_name, p.weight) for p in plans] == [("1", "m--mux", 3.0), ("2", "m--mux", 1.0)]
    # the application's spec names the registry, not a version: its replicas load versions by label
    assert "iteration" not in plans[0].spec and plans[0].spec["registry"]["uri"] == str(tmp_path / "store")
    assert plans[0].spec["multiplex"] == {"max_versions_per_replica": 2, "load_wait_s": 10.0}
    table = route_table(config, plans)["m"]
    assert [(v["label"], v["app"]) for v in table] == [("1", "m--mux"), ("2", "m--mux")]
    assert deployment_class(config.models[0]).func_or_class.__name__ == "MultiplexedDeployment"


def test_multiplexing_needs_registry_versions_of_a_batch_task_and_is_not_declared_for_kubernetes(tmp_path):
    import pytest

    from serve_app.config import ConfigError
    from serve_app.plan import declared_versions

    for bad in ({"name": "c", "task": "classification", "source": "c", "multiplex": {}},
                {"name": "s", "task": "summarization", "multiplex": {}},
                {"name": "c", "task": "classification", "multiplex": {"max_versions_per_replica": 0}}):
        with pytest.raises(ConfigError, match="multiplex"):
            parse_config({"models": [bad]}, settings=GatewaySettings(models_dir=tmp_path))
    with pytest.raises(ValueError, match="multiplex"):
        declared_versions(multiplexed_config(tmp_path))
