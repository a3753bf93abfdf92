"""SlotKVCache: rows of different lengths stay right-aligned, steps write in place, removals keep the rest."""

from __future__ import annotations

import torch

from serve_app.runtime.kvcache import SlotKVCache


def seq(length: int, tag: float) -> list[torch.Tensor]:
    return [torch.full((1, 2, length, 3), tag + layer) for layer in range(2)]


def rows_of(cache: SlotKVCache) -> list[list[float]]:
    """Per running row, the real (unmasked) key column values of layer 0, head 0, dim 0."""
    keys, mask = cache.keys[0][:cache.n, 0, cache.start:cache.end, 0], cache.mask[:cache.n, cache.start:cache.end]
    return [keys[r][mask[r]].tolist() for r in range(cache.n)]


def step(cache: SlotKVCache, values: list[float]) -> torch.Tensor:
    mask = cache.step_mask()
    new = torch.tensor(values).view(-1, 1, 1, 1).expand(cache.n, 2, 1, 3)
    for layer in range(2):
        k, v = cache.update(new + layer, new + layer, layer)
        assert k.shape[2] == mask.shape[-1]
    cache.advance()
    return mask


def test_rows_join_step_and_leave_without_disturbing_each_other():
    cache = SlotKVCache(2, 2, 3, rows=3, dtype=torch.float32, device=torch.device("cpu"), capacity=4)
    cache.add(seq(3, 10.0), seq(3, 10.0))
    step(cache, [11.0])
    cache.add(seq(6, 20.0), seq(6, 20.0))  # longer than the running row: it shifts, and the cache grows
    mask = step(cache, [12.0, 21.0])
    assert mask.shape == (2, 1, 1, 7) and mask.dtype == torch.bool
    cache.add(seq(2, 30.0), seq(2, 30.0))
    step(cache, [13.0, 22.0, 31.0])
    assert rows_of(cache) == [[10.0] * 3 + [11.0, 12.0, 13.0], [20.0] * 6 + [21.0, 22.0], [30.0] * 2 + [31.0]]
    cache.remove(1)  # the longest row goes: the last row takes its slot, leading padding is trimmed
    assert rows_of(cache) == [[10.0] * 3 + [11.0, 12.0, 13.0], [30.0] * 2 + [31.0]]
    assert cache.width == 6
    for i in range(20):  # past the capacity: compaction or growth keeps every row intact
        step(cache, [100.0 + i, 200.0 + i])
    assert rows_of(cache)[1] == [30.0] * 2 + [31.0] + [200.0 + i for i in range(20)]
    cache.remove(0)
    cache.remove(0)
    assert cache.n == 0 and cache.width == 0
