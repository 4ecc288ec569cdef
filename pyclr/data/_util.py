"""Shared helpers of the datasets: argument checks, per-item generators, resizing, lazy imports."""
from __future__ import annotations

import importlib
import numbers
import operator
import zlib

import numpy as np
import torch
import torch.nn.functional as F

from ..losses._checks import check_bool, check_choice  # noqa: F401  (one style of check)


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """An int (not a bool) in ``low..high`` (inclusive, either end open when None)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "" if low is None else str(low)
        hi = "" if high is None else str(high)
        raise ValueError(f"{name}: expected an int in {lo}..{hi}, got {value}")
    return value


def check_seed(seed) -> int:
    # numpy's SeedSequence takes non-negative entropy only.
    return check_int("seed", seed, 0)


def check_index(index, length: int) -> int:
    """A dataset index in ``0..length-1``; IndexError past the end so plain iteration stops."""
    i = operator.index(index)
    if not 0 <= i < length:
        raise IndexError(f"index: expected 0..{length - 1}, got {i}")
    return i


def salt(name: str) -> int:
    """A fixed integer per dataset kind, so equal seeds of two kinds give unrelated streams."""
    return zlib.crc32(name.encode())


def item_rng(seed: int, index: int, kind: str) -> np.random.Generator:
    """The generator of one item: a pure function of (seed, index, dataset kind), so items are
    reproducible in any order and in any worker process without shared state."""
    return np.random.default_rng([seed, salt(kind), index])


def resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resizes a (C, H, W) float image; antialiased bilinear, so shrinking averages like
    area interpolation and enlarging is plain bilinear."""
    if image.shape[-2:] == (height, width):
        return image
    out = F.interpolate(image[None], size=(height, width), mode="bilinear",
                        align_corners=False, antialias=True)[0]
    return out.clamp_(0.0, 1.0)


def as_labels(labels) -> dict:
    """A base dataset's labels as a dict (a bare class index becomes ``{"label": ...}``)."""
    return dict(labels) if isinstance(labels, dict) else {"label": labels}


def optional_import(module: str, purpose: str, package: str | None = None):
    """Imports an optional dependency, or raises an ImportError that says what needs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{purpose} needs the optional package {package or module!r} "
            f"(pip install {package or module}): {exc}"
        ) from exc
