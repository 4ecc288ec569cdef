"""What every pyclr encoder shares: named feature taps and a pooled representation."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


class Encoder(nn.Module):
    """An encoder is a sequence of named stages; ``features`` reads any of their outputs.

    Subclasses implement ``stages()`` (``(name, callable)`` pairs in forward order; each
    stage's output is a tap; the modules stay registered under their own names, so state
    dicts keep the usual layout) and ``pool`` (the last stage's output to the
    representation, of size ``self.feature_dim``), and set ``in_channels``.
    """

    in_channels: int
    feature_dim: int
    min_input_size: int = 1  # the smallest H and W the stages can take

    def stages(self) -> list:
        raise NotImplementedError

    @property
    def taps(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.stages())

    @property
    def default_taps(self) -> tuple[str, ...]:
        """What ``features`` reads when no taps are named: every stage (ResNets: the four
        block groups)."""
        return self.taps

    def features(self, x: torch.Tensor, taps: Iterable[str] | str | None = None) -> dict:
        """The named intermediate maps (before pooling), ``{tap: tensor}``, in the order asked
        (default: ``self.default_taps``).

        Stages after the deepest tap asked for are not run."""
        if taps is not None and not isinstance(taps, str) and (isinstance(taps, (bytes, bytearray))
                                                               or not isinstance(taps, Iterable)):
            raise TypeError(f"taps: expected a tap name or a list of them, got {type(taps).__name__}")
        taps = self.default_taps if taps is None else (taps,) if isinstance(taps, str) else tuple(taps)
        unknown = [t for t in taps if not isinstance(t, str) or t not in self.taps]
        if unknown or not taps:
            raise ValueError(f"taps: expected names among {', '.join(self.taps)}, got {list(taps) or 'none'}")
        self._check_input(x)
        wanted, out = set(taps), {}
        for name, stage in self.stages():
            x = stage(x)
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break
        return {t: out[t] for t in taps}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled representation, ``(B, feature_dim)``."""
        self._check_input(x)
        for _, stage in self.stages():
            x = stage(x)
        return self.pool(x)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _check_input(self, x) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x: expected a batch of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"x: expected a floating-point batch (uint8 images: x.float() / 255), got {x.dtype}")
        if min(x.shape[2:]) < self.min_input_size:
            raise ValueError(f"x: expected images of at least {self.min_input_size}x{self.min_input_size} pixels, "
                             f"got {x.shape[2]}x{x.shape[3]}")
