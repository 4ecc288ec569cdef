"""SimCLR's projection head, with every layer's activation readable for probes."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .encoder import check_int


class ProjectionHead(nn.Module):
    """An MLP of ``num_layers`` linear layers between the encoder and the loss.

    Each layer but the last is Linear -> BatchNorm (when ``batch_norm``) -> ReLU; the last is
    Linear -> BatchNorm without ReLU (SimCLR v2's head; without ``batch_norm``, a plain
    Linear). ``num_layers=0`` is the identity (the loss sees the representation).

    Args:
        in_dim: the representation's size.
        hidden_dim: the hidden layers' size, or one size per hidden layer
            (``num_layers - 1`` of them; Hermann et al.'s 120-84-84 head is
            ``hidden_dim=(120, 84), out_dim=84, num_layers=3``).
        out_dim: the output size (ignored when ``num_layers=0``).
        num_layers: 0 to 4.
        batch_norm: batch normalisation after each linear layer (then no linear layer has a
            bias: the normalisation's shift stands in for it).
        output_bias: without ``batch_norm``, whether the last linear layer has a bias
            (Hermann et al.'s sprites head has none: ``output_bias=False``).

    ``forward(h, return_all=True)`` returns ``[h, a_1, ..., a_L]``: the head's input and every
    layer's output (after its ReLU), the layers a decodability probe reads.
    """

    def __init__(self, in_dim: int, hidden_dim: int | Sequence[int] = 2048, out_dim: int = 128,
                 num_layers: int = 2, batch_norm: bool = True, output_bias: bool = True):
        super().__init__()
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim)):
            check_int(name, value)
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or not 0 <= num_layers <= 4:
            raise ValueError(f"num_layers: expected an int in 0..4, got {num_layers!r}")
        for name, value in (("batch_norm", batch_norm), ("output_bias", output_bias)):
            if not isinstance(value, bool):
                raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
        hidden = _hidden_sizes(hidden_dim, num_layers)
        sizes = [in_dim] + hidden + ([out_dim] if num_layers else [])
        self.layers = nn.ModuleList()
        for i in range(num_layers):
            last = i == num_layers - 1
            parts = [nn.Linear(sizes[i], sizes[i + 1], bias=not batch_norm and (output_bias or not last))]
            if batch_norm:
                parts.append(nn.BatchNorm1d(sizes[i + 1]))
            if not last:
                parts.append(nn.ReLU(inplace=True))
            self.layers.append(nn.Sequential(*parts))
        self.in_dim, self.num_layers = in_dim, num_layers
        self.out_dim = sizes[-1]

    def forward(self, h: torch.Tensor, return_all: bool = False):
        if not isinstance(h, torch.Tensor) or h.dim() != 2 or h.shape[1] != self.in_dim:
            shape = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
            raise ValueError(f"h: expected shape (B, {self.in_dim}), got {shape}")
        if not isinstance(return_all, bool):  # a truthy "no" would return the list
            raise TypeError(f"return_all: expected a bool, got {type(return_all).__name__}")
        outputs = [h]
        for layer in self.layers:
            outputs.append(layer(outputs[-1]))
        return outputs if return_all else outputs[-1]


def _hidden_sizes(hidden_dim, num_layers) -> list:
    count = max(num_layers - 1, 0)
    if isinstance(hidden_dim, int) and not isinstance(hidden_dim, bool):
        check_int("hidden_dim", hidden_dim)
        return [hidden_dim] * count
    sizes = list(hidden_dim)
    if len(sizes) != count:
        raise ValueError(f"hidden_dim: expected an int or {count} sizes (num_layers - 1), got {sizes}")
    for value in sizes:
        check_int("hidden_dim", value)
    return sizes
