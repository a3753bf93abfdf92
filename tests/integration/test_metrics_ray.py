"""Gateway metrics as Ray exports them (Prometheus text on the node's metrics port), under known traffic."""

from __future__ import annotations

import time

from support.serve import gateway_fixture, scrape_sum

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings

DEPLOYED_AT: list[float] = []
# Measured on Ray 2.60 (2 s export interval): a gauge set once stays in the exporter ~20 s, then is gone.
GAUGE_GONE_AFTER_S = 40


def wait_for(name: str, expected: float, **labels) -> float:
    deadline = time.monotonic() + 60  # Ray exports on an interval of a few seconds
    while True:
        value = scrape_sum(name, **labels)
        if value >= expected or time.monotonic() > deadline:
            return value
        time.sleep(1)


def gateway_config(tiny_models):
    return parse_config({"models": [
        {"name": "metered", "task": "classification", "source": "tiny-classifier", "max_length": 32,
         "resources": {"num_cpus": 0.1, "num_gpus": 0}}]}, settings=GatewaySettings(models_dir=tiny_models))


gateway = gateway_fixture(gateway_config, ready=lambda client: DEPLOYED_AT.append(time.monotonic()))


def test_counts_and_errors_match_the_traffic_sent(gateway):
    ok, bad = 7, 3
    errors_before = scrape_sum("ray_gateway_errors_total", model="", kind="invalid_input")
    for _ in range(ok):
        assert gateway.post("/v1/classify", json={"texts": ["a", "b"]}).status_code == 200
    for _ in range(bad):
        assert gateway.post("/v1/classify", json={"texts": [], "model": "metered"}).status_code == 400
    assert wait_for("ray_gateway_requests_total", ok, model="metered", pipeline="") == ok
    expected_errors = errors_before + bad
    assert wait_for("ray_gateway_errors_total", expected_errors, model="", kind="invalid_input") == expected_errors
    assert wait_for("ray_gateway_request_duration_seconds_count", ok, model="metered") == ok
    assert wait_for("ray_gateway_batch_size_count", 1, model="metered") >= 1
    assert wait_for("ray_gateway_loaded_versions", 1, model="metered") == 1
    assert wait_for("ray_gateway_model_load_seconds", 0.001, model="metered") > 0


def test_gauges_stay_exported_without_traffic(gateway):
    """Ray's metrics agent drops a gauge that was not set again within two export intervals (and a worker
    stops exporting a value that does not change): `gateway_loaded_versions`, set once when the ingress
    starts, left Prometheus ~20 s later and the dashboard's panel stayed empty. The gateway sets its gauges
    again every half export interval."""
    time.sleep(max(0.0, DEPLOYED_AT[0] + GAUGE_GONE_AFTER_S - time.monotonic()))  # no traffic meanwhile
    assert scrape_sum("ray_gateway_loaded_versions", model="metered") == 1
    assert scrape_sum("ray_gateway_model_load_seconds", model="metered") > 0
