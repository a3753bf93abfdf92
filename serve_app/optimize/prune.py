"""Pruning of torch models. Unstructured pruning zeroes weights (sparser, not faster on dense kernels);
head pruning removes whole attention heads (smaller matmuls, so faster).

Only the Linear layers of the transformer blocks are pruned: embeddings (half of MiniLM's parameters) are
lookups whose zeros would save nothing, and the task head is too small to matter and too important to touch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import prune

from serve_app.runtime.structure import attention_layers, remove_heads


def prunable_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """Linear layers inside the transformer blocks (`.layer.` / `.layers.`), not the embeddings or the head."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and (".layer." in name or ".layers." in name)]


def sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero weights over the prunable Linear layers."""
    zeros = total = 0
    for _, m in prunable_linears(model):
        zeros += int((m.weight == 0).sum())
        total += m.weight.numel()
    return zeros / total if total else 0.0


def _finish(modules: list[nn.Linear]) -> None:
    # Fold the mask into the weight and drop the re-parametrisation (weight_orig, weight_mask), so the
    # checkpoint holds plain tensors that any loader understands.
    for m in modules:
        prune.remove(m, "weight")


def prune_random(model: nn.Module, amount: float, seed: int = 0) -> None:
    """Zero `amount` of each prunable layer's weights, chosen at random (a baseline for the others)."""
    torch.manual_seed(seed)
    modules = [m for _, m in prunable_linears(model)]
    for m in modules:
        prune.random_unstructured(m, "weight", amount=amount)
    _finish(modules)


def prune_magnitude(model: nn.Module, amount: float, scope: str = "global") -> None:
    """Zero the smallest-|w| weights: `amount` of each layer (`layer`) or of all layers together (`global`)."""
    modules = [m for _, m in prunable_linears(model)]
    if scope == "layer":
        for m in modules:
            prune.l1_unstructured(m, "weight", amount=amount)
    elif scope == "global":
        prune.global_unstructured([(m, "weight") for m in modules], pruning_method=prune.L1Unstructured,
                                  amount=amount)
    else:
        raise ValueError(f"magnitude pruning scope must be 'layer' or 'global', not {scope!r}")
    _finish(modules)


@torch.inference_mode()
def head_importance(model: nn.Module, batches: list[dict], progress: Callable[[], None] | None = None
                    ) -> torch.Tensor:
    """[layers, heads] scores: mean KL divergence of the output distribution when that one head is masked.

    A head whose removal barely moves the outputs is one the model does not rely on; masking is done by zeroing
    the head's slice of the context vector entering the attention output projection.
    """
    layers = attention_layers(model)
    size = layers[0].self.attention_head_size
    counts = [a.self.query.out_features // size for a in layers]
    reference = [torch.log_softmax(model(**b).logits.float(), -1) for b in batches]
    scores = torch.zeros(len(layers), max(counts))
    for li, attn in enumerate(layers):
        for h in range(counts[li]):
            def mask(module, args, h=h):
                x = args[0].clone()
                x[..., h * size:(h + 1) * size] = 0
                return (x,)

            handle = attn.output.dense.register_forward_pre_hook(mask)
            try:
                kl = 0.0
                for ref, b in zip(reference, batches):
                    out = torch.log_softmax(model(**b).logits.float(), -1)
                    kl += float(torch.nn.functional.kl_div(out, ref, log_target=True, reduction="batchmean"))
                scores[li, h] = kl / len(batches)
            finally:
                handle.remove()
            if progress:
                progress()
        scores[li, counts[li]:] = float("inf")
    return scores


def pick_heads(scores: torch.Tensor, amount: float) -> dict[int, list[int]]:
    """The `amount` least important heads over all layers, keeping at least one head in every layer."""
    finite = torch.isfinite(scores)
    n_drop = int(round(amount * int(finite.sum())))
    order = sorted(((float(scores[li, h]), li, h) for li, h in finite.nonzero().tolist()))
    remaining = finite.sum(dim=1).tolist()
    drop: dict[int, list[int]] = {}
    for _, li, h in order:
        if n_drop == 0:
            break
        if remaining[li] > 1:
            drop.setdefault(li, []).append(h)
            remaining[li] -= 1
            n_drop -= 1
    return {li: sorted(hs) for li, hs in sorted(drop.items())}


def prune_heads(model: nn.Module, batches: list[dict], amount: float,
                progress: Callable[[], None] | None = None) -> dict[int, list[int]]:
    """Rank heads by `head_importance` on `batches`, remove the `amount` least important. Returns them."""
    if not attention_layers(model):
        raise ValueError("head pruning needs a BERT-style encoder (attention.self.query / attention.output)")
    heads = pick_heads(head_importance(model, batches, progress), amount)
    remove_heads(model, heads)
    return heads
