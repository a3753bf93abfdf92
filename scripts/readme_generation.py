"""Rewrite the README's generation-targets subsection from docs/bench/generation.json, so the README quotes the
committed run and nothing else: `python scripts/readme_generation.py` after `python -m serve_app.bench.generation`."""

from pathlib import Path

from serve_app.bench.generation.readme import load, render, splice

ROOT = Path(__file__).resolve().parent.parent
readme = ROOT / "README.md"
readme.write_text(splice(readme.read_text(), render(*load(ROOT))))
