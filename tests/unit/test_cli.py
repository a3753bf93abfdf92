"""The `gateway` command: config checks, fail-fast start, and the registry round trip."""

import json

import pytest

from serve_app.cli import main
from serve_app.registry import Registry


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAY_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("GATEWAY_REGISTRY_URI", str(tmp_path / "registry"))
    return tmp_path


def folder(path, content="w"):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_text(content * 50)
    return path


def test_check_config_shows_what_would_be_served(env, capsys):
    reg = Registry(str(env / "registry"))
    for name in ("classifier", "summarizer"):
        reg.register(name, folder(env / name))
        reg.set_alias(name, "stable", "1")
    assert main(["check-config"]) == 1  # the default config's selection variant is not registered yet
    assert "no alias 'fast'" in capsys.readouterr().err
    reg.register("classifier", folder(env / "classifier-int8", content="q"))
    reg.set_alias("classifier", "fast", "2")
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "serves classifier@1 (weight 1) as application classifier--v1" in out
    assert "serves classifier@2 (weight 0) as application classifier--v2" in out
    assert "summarizer@stable" in out


def test_an_empty_registry_fails_before_anything_starts(env, capsys):
    assert main(["check-config"]) == 1
    assert main(["run"]) == 1
    assert "model 'classifier' has no versions" in capsys.readouterr().err


def test_bad_config_exits_2_with_the_field_named(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - {name: c, task: classification, source: c, resources: {num_cpus: -1}}\n")
    assert main(["check-config", str(bad)]) == 2
    assert "models[0].resources.num_cpus" in capsys.readouterr().err


def test_run_refuses_to_start_without_model_folders(capsys, tmp_path, env):
    config = tmp_path / "c.yaml"
    config.write_text("models:\n  - {name: c, task: classification, source: nowhere}\n")
    assert main(["run", "--config", str(config)]) == 2
    assert "make models" in capsys.readouterr().err


def test_prepare_refuses_unknown_names(capsys):
    assert main(["prepare", "translator"]) == 2
    assert "choose from" in capsys.readouterr().err


def test_registry_round_trip(env, capsys):
    src = folder(env / "src", "a")
    assert main(["models", "register", "clf", str(src), "--metric", "accuracy=0.97", "--tag", "team=nlp",
                 "--alias", "stable"]) == 0
    assert main(["models", "register", "clf", str(folder(env / "src2", "b")), "--parent", "1",
                 "--transform", "int8"]) == 0
    assert main(["models", "alias", "clf@2", "canary"]) == 0
    capsys.readouterr()
    assert main(["models", "show", "clf@canary"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["iteration"] == 2 and shown["lineage"] == "int8 of v1" and shown["aliases"] == ["canary"]
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "clf" in listing and "stable" in listing and "int8 of v1" in listing
    assert main(["models", "pull", "clf@stable"]) == 0
    assert "verified" in capsys.readouterr().out
    assert main(["models", "remove", "clf@1"]) == 0
    assert main(["models", "show", "clf@stable"]) == 1  # its alias went with it
    assert "no alias 'stable'" in capsys.readouterr().err
    assert main(["models", "gc", "--min-age", "0"]) == 0
    assert main(["models", "register", "clf", str(env / "missing")]) == 1
