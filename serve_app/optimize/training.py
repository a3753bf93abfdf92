"""The one training loop of the project: fine-tuning the classifier (`make models`) and distilling a smaller
student from it (`gateway optimize --prune layers:...`) differ only in their loss.

AdamW over the parameters that require a gradient, a linear warm-up then decay, gradient norm clipped at 1,
rows shuffled each epoch by a seeded RNG (the same seed gives the same model)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FitSettings:
    epochs: int = 2
    batch_size: int = 16
    learning_rate: float = 1e-4
    warmup_fraction: float = 0.1
    seed: int = 13


def batches(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, i + size)


def fit(model, rows: int, loss_of: Callable[[torch.Tensor], torch.Tensor], settings: FitSettings,
        on_step: Callable[[int, float], None] = lambda epoch, loss: None) -> float:
    """`settings.epochs` epochs over row indices 0..rows-1; `loss_of(index tensor)` is one batch's loss and
    `on_step(epoch, loss)` follows every step. Returns the last epoch's mean loss."""
    from transformers import get_linear_schedule_with_warmup

    rng = random.Random(settings.seed)
    total_steps = math.ceil(rows / settings.batch_size) * settings.epochs
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, int(settings.warmup_fraction * total_steps), total_steps)
    mean = 0.0
    for epoch in range(settings.epochs):
        model.train()
        order = list(range(rows))
        rng.shuffle(order)
        total = 0.0
        for part in batches(rows, settings.batch_size):
            index = torch.tensor(order[part])
            loss = loss_of(index)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            total += loss.item() * len(index)
            on_step(epoch, loss.item())
        mean = total / rows
    model.eval()
    return mean
