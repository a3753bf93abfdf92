"""The running batch's KV cache in preallocated tensors, one row (slot) per sequence.

`DynamicCache` grows every layer's keys and values with `torch.cat` at every decode step: the whole cache is
copied each token (O(n^2) bytes over a generation), and at batch 8 that is ~130 MB of fresh allocations per
step for SmolLM2 with 300-token prompts. Here a decode step writes one column in place.

Layout, per layer: keys and values `[rows, kv_heads, capacity, head_dim]`, and one boolean `mask[rows, capacity]`
(True: a real token). Rows `0..n-1` are the running sequences; every row ends at the same column `end`
(sequences are right-aligned, shorter ones padded on the left, the mask hides the padding), so a decode step
writes column `end` of every row at once. `start` is the first column any row uses: attention reads
`[:n, :, start:end]`, never more than the longest sequence. A sequence that leaves is replaced by the last row
(one row copied), so the running rows stay `0..n-1` without an `index_select` of the whole cache.

It implements the part of transformers' `Cache` that a decoder forward calls (`update`), and is given a 4D
attention mask, so the model builds no mask of its own.
"""

from __future__ import annotations

import torch


class SlotKVCache:
    is_compileable = False

    def __init__(self, num_layers: int, kv_heads: int, head_dim: int, rows: int, dtype: torch.dtype,
                 device: torch.device, capacity: int = 512):
        self.shape = (kv_heads, head_dim)
        self.rows, self.dtype, self.device = rows, dtype, device
        self.num_layers = num_layers
        self.n = self.start = self.end = 0
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        h, d = self.shape
        self.capacity = capacity
        self.keys = [torch.zeros(self.rows, h, capacity, d, dtype=self.dtype, device=self.device)
                     for _ in range(self.num_layers)]
        self.values = [torch.zeros_like(k) for k in self.keys]
        self.mask = torch.zeros(self.rows, capacity, dtype=torch.bool, device=self.device)

    @property
    def width(self) -> int:
        return self.end - self.start

    # -- layout ------------------------------------------------------------------------------------------
    def _move(self, new_start: int, capacity: int | None = None) -> None:
        """Move columns [start:end) of the running rows to start at `new_start` (in new tensors if `capacity`)."""
        s, e, n, w = self.start, self.end, self.n, self.width
        if capacity is not None:
            old_k, old_v, old_m = self.keys, self.values, self.mask
            self._allocate(capacity)
        else:
            old_k, old_v, old_m = self.keys, self.values, self.mask
        for layer in range(self.num_layers):
            for new, old in ((self.keys, old_k), (self.values, old_v)):
                # clone: source and target may overlap within one tensor
                new[layer][:n, :, new_start:new_start + w] = old[layer][:n, :, s:e].clone()
        block = old_m[:n, s:e].clone()
        self.mask[:n].zero_()
        self.mask[:n, new_start:new_start + w] = block
        self.start, self.end = new_start, new_start + w

    def reserve(self, columns: int) -> None:
        """Make room for `columns` more columns after `end`: compact to the left, or grow (doubling)."""
        if self.end + columns <= self.capacity:
            return
        if self.width + columns <= self.capacity:
            self._move(0)
        else:
            self._move(0, max(2 * self.capacity, self.width + columns))

    def add(self, keys: list[torch.Tensor], values: list[torch.Tensor]) -> int:
        """Append a prefilled sequence (per layer `[1, kv_heads, length, head_dim]`) as row n; returns its row."""
        length = keys[0].shape[2]
        if self.n == 0:
            self.start = self.end = 0
        if length > self.end:  # the newcomer is longer than every running row: shift them right
            self.reserve(length - self.width)
            if length > self.end:
                self._move(length - self.width)
        row, lo = self.n, self.end - length
        for layer in range(self.num_layers):
            self.keys[layer][row, :, lo:self.end] = keys[layer][0]
            self.values[layer][row, :, lo:self.end] = values[layer][0]
        self.mask[row].zero_()
        self.mask[row, lo:self.end] = True
        self.start = lo if self.n == 0 else min(self.start, lo)
        self.n += 1
        return row

    def remove(self, row: int) -> None:
        """Drop a row; the last row moves into its slot (callers reorder their own lists the same way)."""
        last = self.n - 1
        if row != last:
            s, e = self.start, self.end
            for layer in range(self.num_layers):
                self.keys[layer][row, :, s:e] = self.keys[layer][last, :, s:e]
                self.values[layer][row, :, s:e] = self.values[layer][last, :, s:e]
            self.mask[row, s:e] = self.mask[last, s:e]
        self.n = last
        if self.n == 0:
            self.start = self.end = 0
            return
        used = self.mask[:self.n, self.start:self.end].any(dim=0).nonzero()
        self.start += int(used[0])  # columns that are padding in every remaining row are dropped

    # -- one decode step -------------------------------------------------------------------------------------
    def step_mask(self) -> torch.Tensor:
        """The 4D boolean mask `[n, 1, 1, width + 1]` for the next token of every row (call before the forward)."""
        self.reserve(1)
        self.mask[:self.n, self.end] = True
        return self.mask[:self.n, None, None, self.start:self.end + 1]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        q = key_states.shape[2]
        self.keys[layer_idx][:self.n, :, self.end:self.end + q] = key_states
        self.values[layer_idx][:self.n, :, self.end:self.end + q] = value_states
        return (self.keys[layer_idx][:self.n, :, self.start:self.end + q],
                self.values[layer_idx][:self.n, :, self.start:self.end + q])

    def advance(self, q: int = 1) -> None:
        """After the forward: the columns written by `update` become part of every row."""
        self.end += q

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.width
