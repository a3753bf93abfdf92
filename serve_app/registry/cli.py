"""`gateway models ...`: the registry from the command line, with rich tables and transfer progress."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from serve_app.registry import ModelVersion, Registry, parse_selector

# Piped output (scripts, CI logs) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)


@contextmanager
def transfer(description: str, total: int):
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=Console(stderr=True)) as progress:
        task = progress.add_task(description, total=total)
        yield lambda path, done: progress.update(task, completed=done)


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--{what} takes KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _version_row(v: ModelVersion, aliases: dict[str, int]) -> list[str]:
    names = ", ".join(sorted(a for a, i in aliases.items() if i == v.iteration))
    metrics = ", ".join(f"{k}={val:g}" for k, val in v.metrics.items())
    return [v.name, str(v.iteration), v.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"), v.content_hash[7:19],
            f"{v.size / 1e6:.1f} MB", names, v.lineage or "", metrics]


def cmd_list(reg: Registry, args) -> int:
    table = Table("model", "iter", "created (UTC)", "sha256", "size", "aliases", "lineage", "metrics")
    names = [args.name] if args.name else reg.models()
    for name in names:
        aliases = reg.aliases(name)
        latest = max((v.iteration for v in reg.versions(name)), default=None)
        for v in reg.versions(name):
            row = _version_row(v, aliases | ({"latest": latest} if v.iteration == latest else {}))
            table.add_row(*row)
    console.print(table)
    return 0


def cmd_show(reg: Registry, args) -> int:
    v = reg.resolve(args.selector)
    console.print_json(json.dumps({**v.model_dump(mode="json"), "lineage": v.lineage,
                                   "aliases": sorted(a for a, i in reg.aliases(v.name).items() if i == v.iteration)}))
    return 0


def cmd_register(reg: Registry, args) -> int:
    folder = Path(args.folder)
    metrics = {k: float(v) for k, v in _pairs(args.metric, "metric").items()}
    with transfer(f"uploading {folder.name}", _folder_size(folder)) as progress:
        v = reg.register(args.name, folder, parent=args.parent, transform=args.transform,
                         tags=_pairs(args.tag, "tag"), metrics=metrics, on_progress=progress)
    for alias in args.alias or []:
        reg.set_alias(args.name, alias, str(v.iteration))
    console.print(f"registered [bold]{v.label}[/] {v.content_hash}")
    return 0


def cmd_alias(reg: Registry, args) -> int:
    sel = parse_selector(args.selector)
    v = reg.set_alias(sel.name, args.alias, args.selector)
    console.print(f"{sel.name}@{args.alias} -> {v.iteration}")
    return 0


def cmd_unalias(reg: Registry, args) -> int:
    reg.remove_alias(args.name, args.alias)
    console.print(f"removed alias {args.name}@{args.alias}")
    return 0


def cmd_remove(reg: Registry, args) -> int:
    v = reg.remove(args.selector)
    console.print(f"removed {v.label} (iteration {v.iteration} stays taken)")
    return 0


def cmd_pull(reg: Registry, args) -> int:
    v = reg.resolve(args.selector)
    with transfer(f"pulling {v.label}", v.size) as progress:
        path = reg.pull(v, on_progress=progress)
    console.print(f"{v.label} verified in {path}")
    return 0


def cmd_gc(reg: Registry, args) -> int:
    removed = reg.gc(min_age_s=args.min_age)
    console.print(f"removed {len(removed['store'])} unfinished publishes, {len(removed['cache'])} cache entries")
    return 0


def add_parser(sub) -> argparse.ArgumentParser:
    models = sub.add_parser("models", help="the model registry: list, show, register, alias, remove, pull, gc")
    msub = models.add_subparsers(dest="registry_command", required=True)
    p = msub.add_parser("list", help="versions of every model (or one)")
    p.add_argument("name", nargs="?")
    p.set_defaults(run=cmd_list)
    p = msub.add_parser("show", help="one version in full")
    p.add_argument("selector", help="name@7, name@stable, name@sha256:3fa1, name@2026-11-26T10:00:00Z")
    p.set_defaults(run=cmd_show)
    p = msub.add_parser("register", help="publish a folder as the next version")
    p.add_argument("name")
    p.add_argument("folder")
    p.add_argument("--parent", type=int, help="iteration this version derives from")
    p.add_argument("--transform", help="what made it from the parent, e.g. int8")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE")
    p.add_argument("--metric", action="append", metavar="KEY=NUMBER")
    p.add_argument("--alias", action="append", help="point these aliases at the new version")
    p.set_defaults(run=cmd_register)
    p = msub.add_parser("alias", help="point an alias (stable, canary, ...) at a version")
    p.add_argument("selector")
    p.add_argument("alias")
    p.set_defaults(run=cmd_alias)
    p = msub.add_parser("unalias", help="remove an alias")
    p.add_argument("name")
    p.add_argument("alias")
    p.set_defaults(run=cmd_unalias)
    p = msub.add_parser("remove", help="remove one version")
    p.add_argument("selector")
    p.set_defaults(run=cmd_remove)
    p = msub.add_parser("pull", help="download and verify a version into the local cache")
    p.add_argument("selector")
    p.set_defaults(run=cmd_pull)
    p = msub.add_parser("gc", help="remove unfinished publishes and unused cache entries")
    p.add_argument("--min-age", type=float, default=3600.0, help="seconds an unfinished publish must be idle")
    p.set_defaults(run=cmd_gc)
    return models
