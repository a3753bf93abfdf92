"""Rewrite the README's benchmark table from docs/bench/bench.json and its variant table from
docs/bench/variants.json (`python scripts/readme_bench.py` after `make bench`): the README quotes the committed
run and nothing else; tests/unit/bench/test_readme_figures.py fails when they differ."""

import json
from pathlib import Path

from serve_app.bench.report import readme_block, splice_readme
from serve_app.bench.variants import readme as variants_readme

ROOT = Path(__file__).resolve().parent.parent
result = json.loads((ROOT / "docs/bench/bench.json").read_text())
readme = ROOT / "README.md"
variants = json.loads((ROOT / "docs/bench/variants.json").read_text())
text = splice_readme(readme.read_text(), readme_block(result))
readme.write_text(variants_readme.splice(text, variants_readme.block(variants, result.get("variants_date"))))
