"""Layer pruning with distillation: a shallower student that keeps every other block of its parent and is
trained to answer like the parent.

Removing whole transformer blocks is the structured pruning that pays most on a CPU: a 6-block MiniLM cut to
3 or 2 blocks runs 2-3x fewer matmuls, on any kernel (no VNNI, no sparse kernels needed), and composes with
int8 and a shorter input. A model without some of its blocks answers badly, so the student is then trained
on the parent's own answers (knowledge distillation, Hinton et al. 2015): the parent's temperature-softened
class probabilities on unlabeled in-domain texts (the training split's texts; the evaluation split is never
seen, and no labels are read). The gate then judges the student on the held-out split like any variant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name

from serve_app.optimize.training import FitSettings, batches, fit
from serve_app.runtime.structure import encoder_layers, keep_layers, spaced_layers


@dataclass(frozen=True)
class DistillSettings(FitSettings):
    epochs: int = 3
    teacher_length: int = 128  # tokens the parent reads to make its targets
    student_length: int = 64  # tokens per training text for the student (fast; the headline and lead)
    temperature: float = 2.0


@torch.inference_mode()
def teacher_logits(model, tokenizer, texts: list[str], max_length: int, batch: int = 64) -> torch.Tensor:
    model.eval()
    out = []
    for part in batches(len(texts), batch):
        enc = tokenizer(texts[part], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        out.append(model(**enc).logits.float())
    return torch.cat(out)


def remove_layers(model, fraction: float) -> list[int]:
    """Keep `1 - fraction` of the blocks (at least one), evenly spaced; returns the kept original indices."""
    total = len(encoder_layers(model))
    keep = spaced_layers(total, max(1, total - round(fraction * total)))
    keep_layers(model, keep)
    return keep


def distill(student, targets: torch.Tensor, tokenizer, texts: list[str], settings: DistillSettings,
            tick: Callable[[str], None]) -> float:
    """Train `student` (in place) to match the softened `targets` on `texts`; returns the last epoch's loss."""
    torch.manual_seed(settings.seed)
    enc = tokenizer(texts, truncation=True, max_length=settings.student_length, padding="max_length",
                    return_tensors="pt")
    t = settings.temperature
    soft = F.softmax(targets / t, dim=-1)

    def loss_of(index: torch.Tensor) -> torch.Tensor:
        logits = student(**{k: v[index] for k, v in enc.items()}).logits
        return F.kl_div(F.log_softmax(logits / t, dim=-1), soft[index], reduction="batchmean") * t * t

    # The word embeddings are half of a small BERT's parameters and change little: frozen, each step is cheap.
    student.get_input_embeddings().weight.requires_grad_(False)
    try:
        return fit(student, len(texts), loss_of, settings,
                   lambda epoch, loss: tick(f"distilling, epoch {epoch + 1}/{settings.epochs} (KL {loss:.4f})"))
    finally:
        student.get_input_embeddings().weight.requires_grad_(True)
