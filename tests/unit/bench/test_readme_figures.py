"""The README quotes benchmark figures only from the committed JSON files: its generated blocks must be exactly
what the generators make of docs/bench/*.json (rerun scripts/readme_bench.py and scripts/readme_generation.py
after a bench run), and the bench block says which run it is."""

from __future__ import annotations

import json
from pathlib import Path

from serve_app.bench.generation import readme as generation_readme
from serve_app.bench.report import README_BEGIN, README_END, readme_block, splice_readme
from serve_app.bench.variants import readme as variants_readme

ROOT = Path(__file__).resolve().parents[3]
README = (ROOT / "README.md").read_text()


def test_the_bench_table_is_bench_json_as_committed():
    result = json.loads((ROOT / "docs/bench/bench.json").read_text())
    block = readme_block(result)
    assert block in README, "README's bench table is stale: run `python scripts/readme_bench.py`"
    assert f"run of {result['date']}" in block
    for t in result["targets"]:
        assert f"| {t['id']} |" in block


def test_the_variant_table_is_variants_json_as_committed():
    result = json.loads((ROOT / "docs/bench/bench.json").read_text())
    variants = json.loads((ROOT / "docs/bench/variants.json").read_text())
    block = variants_readme.block(variants, result.get("variants_date"))
    assert block in README, "README's variant table is stale: run `python scripts/readme_bench.py`"
    for name, row in variants["p4"].items():
        assert f"{name}" in block and f"{row['speedup']:.2f}×" in block


def test_the_generation_section_is_generation_json_as_committed():
    text = generation_readme.render(*generation_readme.load(ROOT))
    assert text in README, "README's generation section is stale: run `python scripts/readme_generation.py`"


def test_the_bench_block_reports_not_measured_rows_with_their_reasons():
    row = {"id": "P1", "measure": "m", "value": None, "target": ">= 0.9", "met": False, "status": "not measured",
           "problems": ["gateway HTTP: 2 requests failed or were answered wrongly"], "spread": None}
    block = readme_block({"date": "2026-01-01", "settings": {"repeats": 5, "window_s": 10}, "targets": [row]})
    assert "not measured (gateway HTTP: 2 requests failed" in block and "**not measured**" in block
    assert splice_readme(f"a\n{README_BEGIN}\nold\n{README_END}\nb", block) == f"a\n{block}\nb"
