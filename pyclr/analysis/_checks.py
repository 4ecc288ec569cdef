"""Argument checks shared by the analyses."""
from __future__ import annotations

import numpy as np
import torch

from ..data._util import check_class_ids, label_tensor


def check_activations(name: str, x, dims: int, shape: str) -> torch.Tensor:
    """A finite floating tensor with ``dims`` dimensions (``shape`` describes them); a numpy
    array is taken as the tensor it views."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a float tensor (or numpy array) of shape {shape}, got {type(x).__name__}")
    if x.dim() != dims or not x.is_floating_point():
        got = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected a float tensor of shape {shape}, got {got}")
    if x.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty tensor, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return x


def check_class_labels(name: str, labels, shape: tuple, device) -> torch.Tensor:
    """Integer class labels >= 0 of exactly ``shape``."""
    y = label_tensor(name, labels, shape)
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool or tuple(y.shape) != tuple(shape):
        raise ValueError(f"{name}: expected integer labels of shape {tuple(shape)}, got "
                         f"{y.dtype} of shape {tuple(y.shape)}")
    if y.numel() and y.min() < 0:
        raise ValueError(f"{name}: expected labels >= 0, got {y.min().item()}")
    if y.numel():
        check_class_ids(name, int(y.max()), y.numel())  # results have a row per id up to the largest
    return y.to(device=device, dtype=torch.long)
