"""Reading a job's committed output: part files under OUT/results and OUT/dead-letters.

Flink's file sink writes in-progress and pending part files as hidden files ('.part-...'); only files without
the leading dot are committed (by a completed checkpoint). Readers - the tests, the bench, a downstream job -
must read those alone, or they would count records a restore is about to discard.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


def committed(folder: Path) -> list[dict]:
    if not folder.is_dir():
        return []
    rows = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts):
            rows.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return rows


@dataclass
class Tally:
    results: list[dict]
    dead_letters: list[dict]

    @classmethod
    def of(cls, out: Path) -> Tally:
        return cls(committed(out / "results"), committed(out / "dead-letters"))

    def keys(self) -> set[str]:
        return {r["key"] for r in self.results} | {d["key"] for d in self.dead_letters}

    def duplicates(self) -> int:
        """Rows beyond the first for each key (0 when every record was written exactly once)."""
        counts = Counter(r["key"] for r in self.results + self.dead_letters)
        return sum(n - 1 for n in counts.values())

    def lost(self, expected: set[str]) -> set[str]:
        return expected - self.keys()
