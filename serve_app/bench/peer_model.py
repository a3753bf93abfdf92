"""What both peers (bench/peers.py) serve, set alike and as the gateway's classifier runs under load: the
classifier runtime, batch size 16, batch window 10 ms, and two batches side by side with one torch thread each
(on 2 cores one 2-thread team stalls at OpenMP barriers whenever another process takes a core; the gateway's
replica, the raw baseline and both peers get the same layout). The answer is `{"label": ..., "score": ...}`."""

from __future__ import annotations

BATCH, WINDOW_S = 16, 0.01
SIDE_BY_SIDE, THREADS_EACH = 2, 1  # batches in flight, torch threads per batch

# Recorded in bench.json beside the figures, so anyone can rerun the peers as they ran.
CONFIG = {
    "LitServe": {"max_batch_size": BATCH, "batch_timeout": WINDOW_S, "workers_per_device": SIDE_BY_SIDE,
                 "torch_threads_per_worker": THREADS_EACH, "accelerator": "cpu"},
    "plain Ray Serve": {"max_batch_size": BATCH, "batch_wait_timeout_s": WINDOW_S,
                        "max_concurrent_batches": SIDE_BY_SIDE, "torch_threads_per_batch": THREADS_EACH,
                        "max_ongoing_requests": 64, "model_call": "off the event loop (a thread per batch)"},
}


def load_model(model_dir: str, max_length: int, threads: int = THREADS_EACH):
    import torch

    from serve_app.runtime.classifier import load_classifier

    torch.set_num_threads(threads)
    return load_classifier(model_dir, max_length)


def answer(result: dict) -> dict:
    return {"label": result["label"], "score": result["score"]}
