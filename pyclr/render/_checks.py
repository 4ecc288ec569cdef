"""Argument checks shared by the rendering modules; messages name the argument, what was
expected and what came (DESIGN.md)."""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from .._checks import check_int, describe, widen_unsigned


def cluster_count(name: str, labels: torch.Tensor, k) -> int:
    """The number of clusters of a label map: ``k`` when given (at least labels.max() + 1),
    else labels.max() + 1."""
    top = int(labels.max()) + 1
    if k is None:
        return top
    k = check_int(name, k)
    if k < top:
        raise ValueError(f"{name}: expected an int >= labels.max() + 1 = {top}, got {k}")
    return k


def int_tensor(name: str, value, dims: Tuple[int, ...], below: int | None = None) -> torch.Tensor:
    """An integer label tensor (torch, numpy or a list) of one of ``dims`` dimensions with no negative
    entry (and none ``>= below`` when given), as an int64 torch tensor on its device."""
    value = widen_unsigned(name, value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iub":  # torch.from_numpy's error for objects or strings names nothing
            raise TypeError(f"{name}: expected integers, got a numpy array of {value.dtype}")
        value = torch.from_numpy(np.ascontiguousarray(value))  # also flipped (negative-stride) arrays
    elif isinstance(value, (list, tuple)):
        value = torch.as_tensor(value)
    if not isinstance(value, torch.Tensor) or value.dim() not in dims:
        shapes = " or ".join(f"{d}-d" for d in dims)
        raise ValueError(f"{name}: expected a {shapes} integer tensor, got {describe(value)}")
    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        raise TypeError(f"{name}: expected an integer dtype, got {value.dtype}")
    if value.numel() == 0:
        raise ValueError(f"{name}: expected at least one label, got shape {tuple(value.shape)}")
    if int(value.min()) < 0:
        raise ValueError(f"{name}: expected labels >= 0, got {int(value.min())}")
    if below is not None and int(value.max()) >= below:
        raise ValueError(f"{name}: expected values below {below}, got {int(value.max())}")
    return value.long()
