from pathlib import Path

import pytest

from serve_app.config import ConfigError, Task, load_config, parse_config
from serve_app.config.settings import REPO_ROOT, GatewaySettings

MINIMAL = {"models": [{"name": "clf", "task": "classification", "source": "clf"}]}


def test_default_config_is_valid_and_serves_both_tasks():
    config = load_config(REPO_ROOT / "configs" / "gateway.yaml", GatewaySettings())
    assert config.default_model(Task.classification).name == "classifier"
    assert config.default_model(Task.summarization).name == "summarizer"
    for m in config.models:
        assert 0 < m.resources.num_cpus < 1, "whole CPUs leave replicas unscheduled on small machines"
        assert m.max_ongoing_requests > m.batching.max_batch_size
    asked = sum(m.resources.num_cpus * m.resources.replicas for m in config.models) + config.server.ingress_num_cpus
    assert asked <= 1.5, "leave room on a 2-core machine for Serve's proxy and controller"
    assert [p.name for p in config.pipelines] == ["summarize_then_classify", "classify_ensemble",
                                                   "long_document_summary", "summarize_business"]


def test_errors_name_every_field_and_the_fix():
    bad = {"models": [{"name": "Bad Name", "task": "translate", "source": "x",
                       "resources": {"num_cpus": 0, "num_cpu": 1}}]}
    with pytest.raises(ConfigError) as err:
        parse_config(bad, "test.yaml", GatewaySettings())
    text = str(err.value)
    assert "test.yaml" in text
    assert "models[0].name" in text and "lowercase" in text
    assert "models[0].task" in text and "classification, identity, summarization" in text
    assert "models[0].resources.num_cpus" in text and "fraction" in text
    assert "models[0].resources.num_cpu: unknown field" in text


@pytest.mark.parametrize("data, fragment", [
    ({"models": []}, "models"),
    ({}, "models"),
    ([1, 2], "top level must be a mapping"),
    ({"models": [MINIMAL["models"][0], MINIMAL["models"][0]]}, "appears twice"),
    ({"models": [{**MINIMAL["models"][0], "generation": {"max_new_tokens": 5}}]},
     "applies to task .summarization. only"),
    ({"models": [{"name": "s", "task": "summarization", "source": "s",
                  "generation": {"max_new_tokens": 300, "max_new_tokens_limit": 100}}]},
     "above max_new_tokens_limit"),
    ({"models": [{**MINIMAL["models"][0], "batching": {"max_batch_size": 0}}]}, "batching.max_batch_size"),
])
def test_invalid_configs_are_refused(data, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_config(data, settings=GatewaySettings())


def test_environment_overrides_apply_in_one_place(monkeypatch, tmp_path):
    monkeypatch.setenv("GATEWAY_HTTP_PORT", "8123")
    monkeypatch.setenv("GATEWAY_NUM_GPUS", "0")
    monkeypatch.setenv("GATEWAY_MODELS_DIR", str(tmp_path))
    config = parse_config(MINIMAL, settings=GatewaySettings())
    assert config.server.http_port == 8123
    assert config.models[0].resources.num_gpus == 0
    assert config.source_of(config.models[0]) == tmp_path / "clf"


def test_absolute_and_file_uri_sources_are_kept(tmp_path):
    data = {"models": [{"name": "a", "task": "classification", "source": f"file://{tmp_path}"},
                       {"name": "b", "task": "classification", "source": str(tmp_path / "b")}]}
    config = parse_config(data, settings=GatewaySettings(models_dir=Path("/elsewhere")))
    assert config.source_of(config.model("a")) == tmp_path
    assert config.source_of(config.model("b")) == tmp_path / "b"


def test_missing_file_and_bad_yaml_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="GATEWAY_CONFIG"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
