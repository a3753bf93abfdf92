"""The soak's short mode in CI: ~30 s at 70% of measured capacity on an identity model, every answer checked."""

from __future__ import annotations

import pytest
from support.serve import deployed

from serve_app.bench import soak as soak_package
from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings


@pytest.fixture(scope="module")
def soak():
    return soak_package


def test_short_soak_has_no_errors_no_wrong_answers_and_flat_memory(serve_session, soak):
    seconds = 25.0  # after a 5 s warm-up and 3 s of capacity measurement: ~35 s in all
    with deployed(parse_config(soak.soak_config("identity"), settings=GatewaySettings())):
        report = soak.run_soak(soak.Target(serve_session, "soak-echo", "identity"), seconds, capacity_s=3,
                               warmup_s=5)
    print("soak:", report)
    assert report["achieved_rps"] >= 0.8 * report["target_rps"], "the load generator fell far behind"
    assert report["errors"] == 0 and report["wrong_answers"] == 0, report
    assert report["serving"], "the RSS of the serving processes (replicas, proxies) must be measured"
    assert report["rss_growth_pct"] < soak.RSS_GROWTH_LIMIT_PCT, report


def test_wrong_answers_are_detected(soak):
    assert soak.Target.same("a", "a") and not soak.Target.same("a", "b")
    assert soak.Target.same(("x", {"x": 0.9, "y": 0.1}), ("x", {"x": 0.9004, "y": 0.0996}))
    assert not soak.Target.same(("x", {"x": 0.9, "y": 0.1}), ("y", {"x": 0.9, "y": 0.1}))
    assert not soak.Target.same(("x", {"x": 0.9, "y": 0.1}), ("x", {"x": 0.8, "y": 0.2}))
