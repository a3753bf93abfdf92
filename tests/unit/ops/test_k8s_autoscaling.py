"""A model's `resources.autoscaling` block: validated in the config, carried into Ray Serve's options."""

from __future__ import annotations

import pytest

from serve_app.config import ConfigError, parse_config
from serve_app.plan import deployment_options


def model(resources: dict):
    return parse_config({"models": [{"name": "m", "task": "identity", "resources": resources}]}).models[0]


def test_autoscaling_becomes_rays_autoscaling_config_instead_of_a_replica_count():
    from ray.serve.config import AutoscalingConfig

    opts = deployment_options(model({"num_cpus": 0.1, "autoscaling": {
        "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1, "upscale_delay_s": 0.5,
        "downscale_delay_s": 2, "look_back_period_s": 11}}), gpus_in_cluster=0)
    assert "num_replicas" not in opts
    cfg = AutoscalingConfig(**opts["autoscaling_config"])  # Ray accepts every field as we name it
    assert (cfg.min_replicas, cfg.max_replicas, cfg.target_ongoing_requests) == (1, 2, 1)
    assert (cfg.upscale_delay_s, cfg.downscale_delay_s, cfg.look_back_period_s) == (0.5, 2, 11)


def test_without_autoscaling_the_fixed_count_stays():
    opts = deployment_options(model({"replicas": 3}), gpus_in_cluster=0)
    assert opts["num_replicas"] == 3 and "autoscaling_config" not in opts


@pytest.mark.parametrize(("resources", "message"), [
    ({"replicas": 2, "autoscaling": {"max_replicas": 4}}, "either 'replicas' or 'autoscaling'"),
    ({"autoscaling": {"min_replicas": 3, "max_replicas": 2}}, "min_replicas <= initial_replicas <= max_replicas"),
    ({"autoscaling": {"max_replicas": 4, "initial_replicas": 5}}, "min_replicas <= initial_replicas"),
    ({"autoscaling": {"target_ongoing_requests": 0}}, "target_ongoing_requests"),
    ({"autoscaling": {"max_replica": 4}}, "unknown field"),
])
def test_bad_autoscaling_is_refused_with_the_field_named(resources, message):
    with pytest.raises(ConfigError, match=message):
        model(resources)
