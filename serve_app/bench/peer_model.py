"""What both peers (bench/peers.py) serve, set alike: the classifier runtime, its batch size (16), batch window
(10 ms) and torch threads (2), and the answer `{"label": ..., "score": ...}`."""

from __future__ import annotations

BATCH, WINDOW_S, THREADS = 16, 0.01, 2


def load_model(model_dir: str, max_length: int):
    import torch

    from serve_app.runtime.classifier import load_classifier

    torch.set_num_threads(THREADS)
    return load_classifier(model_dir, max_length)


def answer(result: dict) -> dict:
    return {"label": result["label"], "score": result["score"]}
