"""Text classifier runtime: any `AutoModelForSequenceClassification` checkpoint folder."""

from __future__ import annotations

from pathlib import Path

import torch

from serve_app.processing import chunks, classification_result
from serve_app.runtime.placement import Placement, check_model_folder, pick_placement


class TextClassifier:
    """Holds tokenizer and model; `predict` is synchronous and meant to run in a worker thread."""

    def __init__(self, path: Path, max_length: int | None = None, placement: Placement | None = None):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        check_model_folder(path)
        self.placement = placement or pick_placement()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            path, dtype=self.placement.dtype, use_safetensors=True
        ).to(self.placement.device).eval()
        cfg = self.model.config
        self.labels = [cfg.id2label[i] for i in range(cfg.num_labels)]
        model_limit = min(self.tokenizer.model_max_length, getattr(cfg, "max_position_embeddings", 512))
        self.max_length = min(max_length, model_limit) if max_length else model_limit

    @torch.inference_mode()
    def predict(self, texts: list[str], micro_batch: int = 16) -> list[dict]:
        # Untruncated lengths tell each caller whether its text was cut; the Rust tokenizer makes this cheap.
        lengths = [len(ids) for ids in self.tokenizer(texts)["input_ids"]]
        results: list[dict] = []
        for start, chunk in zip(range(0, len(texts), micro_batch), chunks(texts, micro_batch)):
            enc = self.tokenizer(list(chunk), truncation=True, max_length=self.max_length, padding=True,
                                 return_tensors="pt").to(self.placement.device)
            probs = torch.softmax(self.model(**enc).logits.float(), dim=-1).cpu().tolist()
            for i, p in enumerate(probs):
                n = lengths[start + i]
                results.append(classification_result(p, self.labels, n > self.max_length, min(n, self.max_length)))
        return results
