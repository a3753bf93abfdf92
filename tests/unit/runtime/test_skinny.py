"""SkinnyLinear computes what nn.Linear does, for every row count, and keeps the module's weights."""

from __future__ import annotations

import torch
from torch import nn

from serve_app.runtime.skinny import SkinnyLinear, use_skinny_linears


def test_skinny_linear_matches_linear_for_few_and_many_rows():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 5, bias=False))
    reference = [m.weight.detach().clone() for m in model if isinstance(m, nn.Linear)]
    with torch.no_grad():
        inputs = {rows: x for rows, x in ((r, torch.randn(r, 3, 16)) for r in (1, 2, 11, 40))}
        expected = {rows: model(x) for rows, x in inputs.items()}
        one = torch.randn(1, 16)
        one_expected = model(one)
        use_skinny_linears(model)
        assert all(type(m) is SkinnyLinear for m in (model[0], model[2]))
        assert all(torch.equal(m.weight, w) for m, w in zip((model[0], model[2]), reference))
        for rows, x in inputs.items():
            got = model(x)
            assert got.shape == expected[rows].shape
            torch.testing.assert_close(got, expected[rows], rtol=1e-5, atol=1e-6)
        assert torch.equal(model(one), one_expected)  # one row: nn.Linear's own product
