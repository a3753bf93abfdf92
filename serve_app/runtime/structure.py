"""Physical removal of attention heads from BERT-style encoders.

transformers 5 dropped `prune_heads`, and its config holds one head count for all layers. Heads are removed
here by slicing the query/key/value output rows and the attention-output input columns of each layer; the
attention code reshapes with `-1` heads of a fixed head size, so a layer with fewer heads just runs smaller
matmuls. The removed heads are recorded in `runtime.json` so the loader can rebuild the same shapes.
"""

from __future__ import annotations

import torch
from torch import nn


def attention_layers(model: nn.Module) -> list[nn.Module]:
    """The `BertAttention`-like modules (with `.self.query` and `.output.dense`), in layer order."""
    return [m for m in model.modules() if hasattr(m, "self") and hasattr(m.self, "query") and hasattr(m, "output")]


def _keep_rows(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    new = nn.Linear(linear.in_features, len(index), bias=linear.bias is not None)
    new.weight.data = linear.weight.data[index].clone()
    if linear.bias is not None:
        new.bias.data = linear.bias.data[index].clone()
    return new


def _keep_columns(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    new = nn.Linear(len(index), linear.out_features, bias=linear.bias is not None)
    new.weight.data = linear.weight.data[:, index].clone()
    if linear.bias is not None:
        new.bias.data = linear.bias.data.clone()
    return new


def remove_heads(model: nn.Module, heads: dict[int, list[int]]) -> None:
    """Remove `heads[layer]` (indices into that layer's current heads) in place. At least one head stays."""
    layers = attention_layers(model)
    for layer_index, drop in heads.items():
        if not drop:
            continue
        attn = layers[int(layer_index)]
        size = attn.self.attention_head_size
        n = attn.self.query.out_features // size
        keep_heads = [h for h in range(n) if h not in set(drop)]
        if not keep_heads:
            raise ValueError(f"layer {layer_index}: removing all {n} heads would leave no attention")
        index = torch.tensor([h * size + i for h in keep_heads for i in range(size)], dtype=torch.long)
        for name in ("query", "key", "value"):
            setattr(attn.self, name, _keep_rows(getattr(attn.self, name), index))
        attn.output.dense = _keep_columns(attn.output.dense, index)
        attn.self.num_attention_heads = len(keep_heads)
        attn.self.all_head_size = len(index)


def head_counts(model: nn.Module) -> list[int]:
    return [a.self.query.out_features // a.self.attention_head_size for a in attention_layers(model)]


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks of a BERT-style encoder (`<base>.encoder.layer`)."""
    layers = getattr(getattr(getattr(model, "base_model", model), "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"{type(model).__name__} has no encoder.layer stack: layer pruning is for BERT-style "
                         "encoders")
    return layers


def spaced_layers(total: int, keep: int) -> list[int]:
    """`keep` of `total` block indices, spread evenly from the first (6 -> 3: 0, 2, 4; 6 -> 2: 0, 3): a
    student built from every other block starts closer to its teacher than one built from the bottom half."""
    if not 1 <= keep <= total:
        raise ValueError(f"cannot keep {keep} of {total} layers")
    return [i * total // keep for i in range(keep)]


def keep_layers(model: nn.Module, keep: list[int]) -> None:
    """Remove every transformer block not in `keep` (original indices), in place; the config follows."""
    layers = encoder_layers(model)
    kept = nn.ModuleList([layers[i] for i in keep])
    model.base_model.encoder.layer = kept
    for i, block in enumerate(kept):  # blocks that know their index (caches, layer types) get the new one
        for module in block.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = i
    model.config.num_hidden_layers = len(kept)
