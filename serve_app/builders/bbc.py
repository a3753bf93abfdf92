"""The BBC News corpus (2,225 articles, 5 topics) and its fixed held-out split.

The split depends only on each article's id (`topic/file.txt`), not on file-system order or a RNG, so every
machine and every run puts the same articles in the held-out set.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from serve_app.builders.sources import bbc_dir

HELD_OUT_PERCENT = 20
SPLIT_RULE = f"int(sha256(article_id).hexdigest()[:8], 16) % 100 < {HELD_OUT_PERCENT} -> held_out"


@dataclass(frozen=True)
class Article:
    id: str  # "topic/NNN.txt"
    label: str
    headline: str
    text: str  # headline + body, as a reader sees it


def load_articles(root: Path | None = None) -> list[Article]:
    root = root or bbc_dir()
    articles = []
    for topic_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(topic_dir.glob("*.txt")):
            # A few files are not valid UTF-8 (pound signs in latin-1); decode leniently.
            raw = path.read_bytes().decode("utf-8", errors="replace")
            lines = [ln.strip() for ln in raw.splitlines()]
            headline = next((ln for ln in lines if ln), "")
            body = " ".join(ln for ln in lines if ln)
            articles.append(Article(f"{topic_dir.name}/{path.name}", topic_dir.name, headline, body))
    return articles


def is_held_out(article_id: str) -> bool:
    return int(hashlib.sha256(article_id.encode()).hexdigest()[:8], 16) % 100 < HELD_OUT_PERCENT


def split(articles: list[Article]) -> tuple[list[Article], list[Article]]:
    """(train, held_out) by the fixed rule in SPLIT_RULE."""
    train = [a for a in articles if not is_held_out(a.id)]
    held_out = [a for a in articles if is_held_out(a.id)]
    return train, held_out


def labels_of(articles: list[Article]) -> list[str]:
    return sorted({a.label for a in articles})
