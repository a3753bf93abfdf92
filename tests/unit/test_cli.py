from serve_app.cli import main


def test_check_config_lists_models_and_their_folders(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAY_MODELS_DIR", str(tmp_path))
    (tmp_path / "classifier").mkdir()
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "classifier" in out and "found" in out
    assert "summarizer" in out and "MISSING (run `make models`)" in out


def test_bad_config_exits_2_with_the_field_named(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - {name: c, task: classification, source: c, resources: {num_cpus: -1}}\n")
    assert main(["check-config", str(bad)]) == 2
    assert "models[0].resources.num_cpus" in capsys.readouterr().err


def test_run_refuses_to_start_without_model_folders(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAY_MODELS_DIR", str(tmp_path))
    assert main(["run"]) == 2
    assert "make models" in capsys.readouterr().err


def test_models_refuses_unknown_names(capsys):
    assert main(["models", "translator"]) == 2
    assert "choose from" in capsys.readouterr().err
