"""The task contract is what every part reads: a task's route, OIP metadata, pipeline fields, parameters, config
rules and deployment class all come from its contract. Parametrised over TASKS, so a new task module is
checked by these tests as soon as it exists."""

import ast
from importlib import import_module
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serve_app.config import ConfigError, Task, parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.dataplane import DataPlane
from serve_app.dataplane.routing import ModelRoutes
from serve_app.errors import InvalidInput
from serve_app.pipelines.validate import task_fields
from serve_app.protocols.http_app import create_app
from serve_app.tasks import TASKS, contract

OIP_DATATYPES = {"BYTES", "FP32", "INT64", "BOOL"}
REPO = Path(__file__).resolve().parents[3]


class Echo:
    """A backend answering every task with one record per text holding each of the task's outputs."""

    def __init__(self, task):
        self.task = task

    async def infer(self, texts, params):
        zero = {"BYTES": "x", "FP32": 0.5, "INT64": 1, "BOOL": False}
        record = {o.name: ({"a": 1.0} if len(o.shape) > 1 else zero[o.datatype]) for o in self.task.outputs}
        return {"version": "1", "results": [dict(record) for _ in texts], "params": params}

    async def info(self):
        return {}


def one_model_gateway(task):
    source = {} if not task.has_files else {"source": "folder"}
    config = parse_config({"models": [{"name": "m", "task": task.name, **source}]}, settings=GatewaySettings())
    routes = {"m": ModelRoutes("m")}
    routes["m"].add("1", Echo(task), 1.0)
    return TestClient(create_app(lambda: DataPlane(config, routes)))


def test_tasks_are_found_by_module():
    modules = {p.stem for p in (REPO / "serve_app/tasks").glob("*.py")} - {"__init__", "contract"}
    assert modules == set(TASKS) == {t.value for t in Task}


@pytest.mark.parametrize("task", TASKS.values(), ids=list(TASKS))
def test_a_contract_is_complete(task):
    assert task.outputs and all(o.datatype in OIP_DATATYPES for o in task.outputs)
    assert set(task_fields(task.name)) <= {o.name for o in task.outputs}
    module, _, cls = task.deployment.partition(":")
    tree = ast.parse((REPO / (module.replace(".", "/") + ".py")).read_text())  # named without importing Ray
    assert cls in {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    if task.runtime:
        module, _, fn = task.runtime.partition(":")
        assert callable(getattr(import_module(module), fn))


@pytest.mark.parametrize("task", [t for t in TASKS.values() if t.route], ids=lambda t: t.name)
def test_a_task_route_answers_with_its_outputs(task):
    client = one_model_gateway(task)
    r = client.post(task.route, json={"texts": ["one", "two"]})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "m" and r.headers["x-model-version"] == "1"
    assert [set(x) for x in r.json()["results"]] == [{o.name for o in task.outputs}] * 2
    r = client.post(task.route, json={"texts": ["one"], "unknown_field": 1})
    assert r.status_code == 400 and "unknown_field" in r.json()["error"]


@pytest.mark.parametrize("task", TASKS.values(), ids=list(TASKS))
def test_oip_metadata_lists_the_contract_outputs(task):
    meta = one_model_gateway(task).get("/v2/models/m").json()
    assert meta["outputs"] == task.oip_outputs()
    assert meta["properties"]["task"] == task.name


def test_parameters_are_checked_by_the_task():
    summarizer = parse_config({"models": [{"name": "s", "task": "summarization", "source": "f",
                                           "generation": {"max_new_tokens_limit": 100}}]}).models[0]
    assert contract("summarization").params(summarizer, {}) == {"max_new_tokens": 64}
    with pytest.raises(InvalidInput, match="between 1 and 100"):
        contract("summarization").params(summarizer, {"max_new_tokens": 101})
    assert contract("classification").params(summarizer, {"max_new_tokens": 5}) == {}


def test_config_rules_come_from_the_contract():
    with pytest.raises(ConfigError, match="runtime 'onnx' does not serve task 'summarization'"):
        parse_config({"models": [{"name": "s", "task": "summarization", "source": "f", "runtime": "onnx"}]})
    with pytest.raises(ConfigError, match="identity models have no files"):
        parse_config({"models": [{"name": "e", "task": "identity", "source": "f"}]})
    models = parse_config({"models": [{"name": "c", "task": "classification", "source": "f"},
                                      {"name": "e", "task": "identity"}]}).models
    assert [m.coalesces for m in models] == [True, False]
