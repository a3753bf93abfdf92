"""The gateway configs a local soak deploys, by --model."""

from __future__ import annotations


def soak_config(model: str) -> dict:
    """identity: no weights (CI); classifier: the prepared BBC classifier from ./models (make models); mixed:
    both prepared models and the classify_ensemble pipeline (the summarizer unbatched, so that its greedy
    summaries are bit-identical to the reference whatever else shares the batch)."""
    cpu = {"num_gpus": 0, "num_cpus": 0.1}
    if model == "mixed":
        clf = {"task": "classification", "source": "classifier",
               "batching": {"max_batch_size": 16, "batch_wait_timeout_s": 0.01},
               "resources": {"num_cpus": 0.4, "num_gpus": "auto", "threads": 1}}
        return {"models": [
            {"name": "classifier", "max_length": 128, **clf},
            {"name": "classifier-lead", "max_length": 64, **clf},
            {"name": "summarizer", "task": "summarization", "source": "summarizer", "max_length": 256,
             "batching": {"max_batch_size": 1, "batch_wait_timeout_s": 0.0},
             "resources": {"num_cpus": 0.4, "num_gpus": "auto", "threads": 1},
             "generation": {"max_new_tokens": 8, "max_new_tokens_limit": 16}}],
            "pipelines": [{"name": "classify_ensemble", "graph": {
                "type": "fuse", "method": "weighted_average", "weights": {"full": 2, "lead": 1},
                "source": {"type": "fanout", "branches": {"full": {"type": "model", "model": "classifier"},
                                                          "lead": {"type": "model", "model": "classifier-lead"}}}}}]}
    if model == "identity":
        return {"models": [{"name": "soak-echo", "task": "identity", "delay_ms": 20,
                            "resources": {**cpu, "max_ongoing_requests": 64}}]}
    return {"models": [{"name": "classifier", "task": "classification", "source": "classifier", "max_length": 128,
                        "batching": {"max_batch_size": 16, "batch_wait_timeout_s": 0.01},
                        "resources": {"num_cpus": 0.5, "num_gpus": "auto", "threads": 1}}]}
