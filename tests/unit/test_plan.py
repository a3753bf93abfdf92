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
