"""The fast-path switches: set for every entry point unless the environment already decides."""

from serve_app.serve_env import FAST_PATH, use_fast_path


def test_sets_the_switches_in_an_empty_environment():
    env: dict[str, str] = {}
    assert use_fast_path(env) == FAST_PATH
    assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"


def test_an_explicit_choice_in_the_environment_wins():
    env = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"}
    assert use_fast_path(env)["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "0"
