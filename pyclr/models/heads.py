"""SimCLR's projection head, with every layer's activation readable for probes."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .._checks import as_sequence, check_bool, check_int, is_int, shown


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
        in_dim, out_dim = check_int("in_dim", in_dim, 1), check_int("out_dim", out_dim, 1)
        num_layers = check_int("num_layers", num_layers, 0, 4)
        batch_norm, output_bias = check_bool("batch_norm", batch_norm), check_bool("output_bias", output_bias)
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
        return_all = check_bool("return_all", return_all)  # a truthy "no" would return the list
        outputs = [h]
        for layer in self.layers:
            outputs.append(layer(outputs[-1]))
        return outputs if return_all else outputs[-1]


def _hidden_sizes(hidden_dim, num_layers) -> list:
    count = max(num_layers - 1, 0)
    if is_int(hidden_dim):
        return [check_int("hidden_dim", hidden_dim, 1)] * count
    sizes = as_sequence(hidden_dim)  # np.array([120, 84]) too
    if sizes is None:
        raise TypeError(f"hidden_dim: expected an int or {count} sizes (num_layers - 1), got {shown(hidden_dim)}")
    if len(sizes) != count:
        raise ValueError(f"hidden_dim: expected an int or {count} sizes (num_layers - 1), got {sizes!r}")
    return [check_int("hidden_dim", value, 1) for value in sizes]
