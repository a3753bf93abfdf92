"""Rewrite the README's benchmark table from docs/bench/bench.json (`python scripts/readme_bench.py` after `make
bench`): the README quotes the committed run and nothing else; tests/unit/bench/test_readme_figures.py fails
when the two differ."""

import json
from pathlib import Path

from serve_app.bench.report import readme_block, splice_readme

ROOT = Path(__file__).resolve().parent.parent
result = json.loads((ROOT / "docs/bench/bench.json").read_text())
readme = ROOT / "README.md"
readme.write_text(splice_readme(readme.read_text(), readme_block(result)))
