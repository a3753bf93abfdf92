"""What the optimize commands show while they work and when they are done: one progress line, the metrics table.
Shared by `gateway optimize` (cli.py) and `gateway optimize-report` (report.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 160)
METRIC_NAMES = {"accuracy": "accuracy %", "rougeL_headline": "ROUGE-L vs headline", "rougeL_vs_first":
                "ROUGE-L vs parent", "size_mb": "weights MB", "p50_b1_ms": "p50 b1 ms", "p50_b16_ms": "p50 b16 ms",
                "throughput_b16": "texts/s b16", "tokens_per_s": "tokens/s",
                "tokens_per_s_c8": "tokens/s c8"}


def quiet_transformers() -> None:
    """Keep one progress line readable: no per-load weight bars, no 'sequence longer than' notices (the
    runtimes truncate on purpose and measure the untruncated length to report it)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@contextmanager
def progress_line(title: str) -> Iterator:
    quiet_transformers()
    out = Console(stderr=True)
    if not out.is_terminal:  # a log or CI: a plain line per step, at most every PLAIN_EVERY_S seconds
        yield plain_ticks(out, title)
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=out, transient=False) as progress:
        task = progress.add_task(title)
        yield lambda step: progress.update(task, description=f"{title}: {step}")


PLAIN_EVERY_S = 10.0


def plain_ticks(out: Console, title: str):
    """Where no progress bar can redraw (output to a file or CI), print `title: step [elapsed]` now and then."""
    import time

    started, last = time.monotonic(), [float("-inf")]

    def tick(step: str) -> None:
        now = time.monotonic()
        if now - last[0] >= PLAIN_EVERY_S:
            last[0] = now
            out.print(f"{title}: {step} [{now - started:.0f} s]", highlight=False)
    return tick


def metrics_table(title: str, rows: dict[str, dict]) -> Table:
    keys = [k for k in METRIC_NAMES if any(k in r for r in rows.values())]
    table = Table(title=title)
    table.add_column("variant")
    for k in keys:
        table.add_column(METRIC_NAMES[k], justify="right")
    for name, r in rows.items():
        table.add_row(name, *[f"{r[k]:g}" if k in r else "" for k in keys])
    return table
