"""Pre- and post-processing shared by the model runtimes. Plain Python, unit-tested without Ray or torch."""

from __future__ import annotations

from collections.abc import Sequence


def flatten(requests: Sequence[Sequence[str]]) -> tuple[list[str], list[int]]:
    """Many requests' text lists -> one flat list for the model, plus each request's size to split back."""
    flat = [t for texts in requests for t in texts]
    return flat, [len(texts) for texts in requests]


def unflatten(items: Sequence, sizes: Sequence[int]) -> list[list]:
    """Inverse of `flatten`: give each request its own results, in order."""
    if sum(sizes) != len(items):
        raise ValueError(f"{len(items)} results for {sum(sizes)} inputs")
    out, start = [], 0
    for n in sizes:
        out.append(list(items[start : start + n]))
        start += n
    return out


def chunks(items: Sequence, size: int) -> list[Sequence]:
    """Split a flat batch into model-sized micro-batches so one large request cannot blow up memory."""
    if size < 1:
        raise ValueError("chunk size must be >= 1")
    return [items[i : i + size] for i in range(0, len(items), size)]


def classification_result(probs: Sequence[float], labels: Sequence[str], truncated: bool, tokens: int) -> dict:
    """One text's answer: the top label, its probability, every label's probability, and truncation."""
    if len(probs) != len(labels):
        raise ValueError(f"{len(probs)} probabilities for {len(labels)} labels")
    best = max(range(len(probs)), key=lambda i: probs[i])
    return {
        "label": labels[best],
        "score": float(probs[best]),
        "probabilities": {label: float(p) for label, p in zip(labels, probs)},
        "truncated": truncated,
        "input_tokens": tokens,
    }


SUMMARY_SYSTEM_PROMPT = "You are a news editor. You write short, factual summaries."


def summary_messages(text: str) -> list[dict]:
    """Chat messages asking an instruction-tuned model for a summary of `text`."""
    return [
        {"role": "system", "content": SUMMARY_SYSTEM_PROMPT},
        {"role": "user", "content": f"Summarize this article in one sentence.\n\n{text}"},
    ]


def cut_generation(token_ids: Sequence[int], max_new_tokens: int, stop_ids: set[int]) -> tuple[list[int], str]:
    """Keep a generated sequence up to its own limit or first stop token; say why it ended.

    Requests batched together share one `generate` call run to the largest limit among them. Greedy decoding
    is prefix-consistent, so cutting the longer run at a request's own limit gives what it would have got alone.
    """
    kept: list[int] = []
    for tok in token_ids[:max_new_tokens]:
        if tok in stop_ids:
            return kept, "stop"
        kept.append(tok)
    return kept, "length"
