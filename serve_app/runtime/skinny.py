"""Linear layers that stay cheap for a handful of rows (a decode step of a few sequences) on CPU.

`F.linear(x, W)` is `x @ W.T`; for a few rows of x, MKL's sgemm (measured on this machine's AMD EPYC, AVX2,
2 threads, SmolLM2-135M's 211 weight matrices) costs 54 ms at 1 row, 143 ms at 8 and 226 ms at 16: each extra
row costs almost as much as a new pass over the weights. The same product taken as `(W @ x.T).T` streams W
once: 47 ms at 4 rows, 79 ms at 8, 131 ms at 16 (every matrix of the model, random inputs, 10 passes).
At one row both are the same matrix-vector product (identical results); past 32 rows `F.linear` wins again.
Results differ from `F.linear`'s in the last float bits (summation order), as batched and unbatched GEMMs
already do.
"""

from __future__ import annotations

import torch
from torch import nn

MAX_ROWS = 32


class SkinnyLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        if rows <= 1 or rows > MAX_ROWS or x.device.type != "cpu":
            return super().forward(x)
        flat = x.reshape(rows, self.in_features)
        out = torch.mm(self.weight, flat.t()).t()
        if self.bias is not None:
            out = out + self.bias
        return out.contiguous().view(*x.shape[:-1], self.out_features)


def use_skinny_linears(model: nn.Module) -> nn.Module:
    """Switch the model's `nn.Linear` layers (exactly that class: quantized or custom ones are left alone) to
    `SkinnyLinear` in place. Weights, tying and state dict are unchanged."""
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = SkinnyLinear
    return model
