"""Every task the gateway serves, found by module: each module here but `contract` declares `CONTRACT`."""

from __future__ import annotations

import pkgutil
from importlib import import_module

from serve_app.tasks.contract import Output, TaskContract, WindowJoin


def _discover() -> dict[str, TaskContract]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name != "contract":
            declared = import_module(f"{__name__}.{info.name}").CONTRACT
            found[declared.name] = declared
    return dict(sorted(found.items()))


TASKS: dict[str, TaskContract] = _discover()


def contract(task: str) -> TaskContract:
    return TASKS[str(task)]


def streaming_tasks() -> list[str]:
    """The tasks whose models generate token streams."""
    return [name for name, task in TASKS.items() if task.streams]


def window_joins() -> list[WindowJoin]:
    """Every task's serial-split join, text joins first: a window record holding both a generated text and
    probabilities (a chain that summarizes, then classifies) is joined by its text, which a reduce step reads."""
    joins = [t.window_join for t in TASKS.values() if t.window_join is not None]
    return sorted(joins, key=lambda j: not j.text)


__all__ = ["TASKS", "Output", "TaskContract", "WindowJoin", "contract", "streaming_tasks", "window_joins"]
