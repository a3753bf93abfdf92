"""Every task the gateway serves, found by module: each module here but `contract` declares `CONTRACT`."""

from __future__ import annotations

import pkgutil
from importlib import import_module

from serve_app.tasks.contract import Output, TaskContract


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


__all__ = ["TASKS", "Output", "TaskContract", "contract"]
