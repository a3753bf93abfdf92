"""Load-time checks of pipelines against the served models: each error names the pipeline and the node."""

from __future__ import annotations

from pydantic import BaseModel

from serve_app.pipelines.fusion import normalise_weights
from serve_app.pipelines.spec import (
    ChainNode,
    Condition,
    FanoutNode,
    FuseNode,
    ModelNode,
    Node,
    Pipeline,
    PipelineRef,
    SplitNode,
    SwitchNode,
)
from serve_app.tasks import contract, window_joins


def task_fields(task: str) -> dict[str, str]:
    """What a task's answer holds for pipelines, by field, and the type of each field (its contract says)."""
    return contract(task).pipeline_fields()


class PipelineError(ValueError):
    pass


class _Checker:
    def __init__(self, pipelines: list[Pipeline], model_tasks: dict[str, str]):
        self.pipelines = {p.name: p for p in pipelines}
        self.model_tasks = model_tasks
        self.stack: list[str] = []

    def fail(self, path: str, message: str):
        raise PipelineError(f"pipeline '{self.stack[-1]}', node '{path}': {message}")

    def pipeline(self, name: str, path: str) -> dict[str, str]:
        if name in self.stack:
            self.fail(path, "cycle: " + " -> ".join([*self.stack[self.stack.index(name):], name]))
        if name not in self.pipelines:
            self.fail(path, f"unknown pipeline '{name}'; known: {', '.join(sorted(self.pipelines))}")
        self.stack.append(name)
        try:
            return self.node(self.pipelines[name].graph, "graph")
        finally:
            self.stack.pop()

    def node(self, node: Node, path: str, available: dict[str, str] | None = None) -> dict[str, str]:
        """The fields (name -> type) of what `node` answers for each text; input is always text. `available`:
        the fields answered before it for the same text (a chain's earlier steps), which a switch may test."""
        check = {ModelNode: self._model, ChainNode: self._chain, SplitNode: self._split, FanoutNode: self._fanout,
                 FuseNode: self._fuse, PipelineRef: lambda n, p: self.pipeline(n.pipeline, p),
                 SwitchNode: lambda n, p: self._switch(n, p, available or {"text": "text"})}.get(type(node))
        if check is None:
            self.fail(path, f"unknown node type {type(node).__name__}")
        return check(node, path)

    def _model(self, node: ModelNode, path: str) -> dict[str, str]:
        name = node.model.partition("@")[0]
        if name not in self.model_tasks:
            self.fail(path, f"unknown model '{name}'; served models: {', '.join(sorted(self.model_tasks))}")
        return task_fields(self.model_tasks[name])

    def _chain(self, node: ChainNode, path: str) -> dict[str, str]:
        fields = {"text": "text"}
        for i, step in enumerate(node.steps):
            where = f"{path}.steps[{i}]"
            if step.input not in fields:
                self.fail(where, f"input field '{step.input}' is not produced before this step; "
                                 f"available: {', '.join(sorted(fields))}")
            if fields[step.input] != "text":
                self.fail(where, f"feeds '{step.input}' ({fields[step.input]}) to a step that takes text")
            fields.update(self.node(step.node, f"{where}.node", dict(fields)))
        return fields

    def _split(self, node: SplitNode, path: str) -> dict[str, str]:
        inner = self.node(node.node, f"{path}.node")
        if node.mode == "serial":
            if node.overlap_chars >= node.window_chars:
                self.fail(path, "overlap_chars must be smaller than window_chars")
            joins = window_joins()
            usable = [j for j in joins if j.field in inner]
            if not usable:
                self.fail(path, f"serial split joins {' or '.join(j.noun for j in joins)}; its node gives "
                                + ("neither" if len(joins) == 2 else "none of them"))
            if node.reduce is not None:
                if not usable[0].text:
                    texts = " or ".join(j.noun for j in joins if j.text)
                    self.fail(f"{path}.reduce", f"reduce takes the joined {texts}; the node gives none")
                return self.node(node.reduce, f"{path}.reduce")
        elif node.reduce is not None:
            self.fail(f"{path}.reduce", "reduce applies to mode 'serial' only")
        return inner

    def _fanout(self, node: FanoutNode, path: str) -> dict[str, str]:
        if node.min_success is not None:
            if node.policy != "best_effort":
                self.fail(path, "min_success applies to policy 'best_effort' only")
            if node.min_success > len(node.branches):
                self.fail(path, f"min_success {node.min_success} exceeds the {len(node.branches)} branches")
        for name, branch in node.branches.items():
            self.node(branch, f"{path}.branches.{name}")
        return {"branches": "branches"}

    def _switch(self, node: SwitchNode, path: str, available: dict[str, str]) -> dict[str, str]:
        """What every branch answers (the fields all cases and the default share: a text no case takes has only
        `branch`, unless there is a default), plus `branch`."""
        if "default" in node.cases:
            self.fail(f"{path}.cases.default", "'default' names the default branch; call this case otherwise")
        answers = []
        for name, case in node.cases.items():
            self._condition(case.when, f"{path}.cases.{name}.when", available)
            answers.append(self.node(case.node, f"{path}.cases.{name}"))
        answers.append(self.node(node.default, f"{path}.default") if node.default is not None else {})
        shared = {f: t for f, t in answers[0].items() if all(a.get(f) == t for a in answers[1:])}
        return {**shared, "branch": "label"}

    def _condition(self, cond: Condition, path: str, available: dict[str, str]) -> None:
        kind, name = cond.source
        if kind != "field":
            return
        if name not in available:
            self.fail(path, f"tests field '{name}', which is not answered before this node; available: "
                            f"{', '.join(sorted(available))}")
        numeric = cond.above is not None or cond.below is not None
        if numeric and available[name] != "number":
            self.fail(path, f"above/below compare numbers; field '{name}' is {available[name]}")

    def _fuse(self, node: FuseNode, path: str) -> dict[str, str]:
        source = f"{path}.source"
        self.node(node.source, source)
        for name, branch in node.source.branches.items():
            fields = self.node(branch, f"{source}.branches.{name}")
            if "probabilities" not in fields:
                self.fail(f"{source}.branches.{name}", "cannot fuse: this branch gives no probabilities "
                                                       "(fusing text outputs is not defined)")
        if node.method == "weighted_average":
            if node.weights is None:
                self.fail(path, "weighted_average needs weights for every branch")
            try:
                normalise_weights(node.weights, list(node.source.branches))
            except ValueError as err:
                self.fail(path, f"bad weights: {err}")
        elif node.weights is not None:
            self.fail(path, f"weights apply to weighted_average only, not {node.method}")
        unknown = sorted(set(node.label_map) - set(node.source.branches))
        if unknown:
            self.fail(path, f"label_map names unknown branches {unknown}")
        return task_fields("classification")  # a fusion answers like a classifier


def check_pipelines(pipelines: list[Pipeline], model_tasks: dict[str, str]) -> None:
    """Raise PipelineError for unknown models or pipelines, cycles, type mismatches and bad weights."""
    names = [p.name for p in pipelines]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PipelineError(f"pipeline names appear twice: {duplicates}")
    clash = sorted(set(names) & set(model_tasks))
    if clash:
        raise PipelineError(f"pipelines and models share names {clash}; a name must address one thing")
    checker = _Checker(pipelines, model_tasks)
    for p in pipelines:
        checker.pipeline(p.name, "graph")


def output_fields(pipelines: list[Pipeline], model_tasks: dict[str, str], name: str) -> dict[str, str]:
    return _Checker(pipelines, model_tasks).pipeline(name, "graph")


def models_used(pipelines: list[Pipeline], name: str) -> set[str]:
    """Every model reference (`name` or pinned `name@3`) the pipeline calls, through nested pipelines too.
    Pipelines are validated (no cycles) before this runs."""
    by_name = {p.name: p for p in pipelines}
    found: set[str] = set()

    def walk(value) -> None:
        if isinstance(value, ModelNode):
            found.add(value.model)
        elif isinstance(value, PipelineRef):
            walk(by_name[value.pipeline].graph)
        elif isinstance(value, BaseModel):
            for field in type(value).model_fields:
                walk(getattr(value, field))
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)

    walk(by_name[name].graph)
    return found
