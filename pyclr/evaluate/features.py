"""Frozen features of a dataset, read through an encoder (and optionally its head)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .._checks import check_bool, check_device, check_int
from ..data._util import label_tensor


@torch.no_grad()
def extract_features(encoder: nn.Module, dataset, *, head: nn.Module | None = None,
                     all_layers: bool = False, batch_size: int = 256, device=None,
                     num_workers: int = 0):
    """Runs ``dataset`` through ``encoder`` (eval mode, no gradients) in order.

    Items are ``(image, labels)`` with labels an int/tensor or a dict of them. Returns
    ``(features, labels)``: features ``(n, d)`` on ``device`` — the encoder's output, the head's
    output when a head is given, or with ``all_layers`` the list ``[input, layer 1, ...]`` of
    every head layer (``ProjectionHead.forward(..., return_all=True)``); labels a tensor or a
    dict of tensors, as the items carry them.
    """
    all_layers, batch_size = check_bool("all_layers", all_layers), check_int("batch_size", batch_size, 1)
    num_workers = check_int("num_workers", num_workers, 0)
    if all_layers and head is None:
        raise ValueError("all_layers: needs a head (the layers are the projection head's)")
    if not isinstance(encoder, nn.Module) or (head is not None and not isinstance(head, nn.Module)):
        raise TypeError(f"encoder, head: expected torch.nn.Modules, got {type(encoder).__name__}, "
                        f"{type(head).__name__}")
    if device is None:  # the encoder's; the CPU for one without parameters (e.g. a fixed transform)
        device = next(itertools.chain(encoder.parameters(), encoder.buffers()), torch.empty(0)).device
    device = check_device(device)
    modules = [m for m in (encoder, head) if m is not None]
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        chunks, labels = [], []
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers):
            images, item_labels = _image_label_batch(batch)
            h = encoder(images.to(device, non_blocking=True))
            out = h if head is None else head(h, return_all=True) if all_layers else head(h)
            chunks.append(out)
            labels.append(item_labels)
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)
    if not chunks:
        raise ValueError("dataset: expected at least one item, got an empty dataset")
    feats = [torch.cat(parts) for parts in zip(*chunks)] if all_layers else torch.cat(chunks)
    if isinstance(labels[0], dict):
        return feats, {k: torch.cat([_label_tensor(l[k], k) for l in labels]) for k in labels[0]}
    return feats, torch.cat([_label_tensor(l, "label") for l in labels])


def _image_label_batch(batch):
    """A DataLoader batch of ``(image, labels)`` items as (images, labels), or a ValueError that
    says what the items should be (a tensor dataset of images alone would be unpacked row by row)."""
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], torch.Tensor)):
        got = (f"items of {len(batch)} parts" if isinstance(batch, (tuple, list))
               else f"bare {type(batch).__name__}s")
        raise ValueError(f"dataset: expected items (image, labels), labels an int, a tensor or a dict of them, "
                         f"got {got} (for images alone: TensorDataset(images, torch.zeros(len(images))))")
    return batch


def _label_tensor(labels, name: str) -> torch.Tensor:
    try:
        return torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError):
        got = type(labels[0]).__name__ if isinstance(labels, (list, tuple)) and labels else type(labels).__name__
        raise ValueError(f"dataset: expected numeric labels ({name!r}: a number or a tensor per item), "
                         f"got {got}s") from None


@torch.no_grad()
def layer_activations(encoder: nn.Module, images: torch.Tensor, *, head: nn.Module | None = None,
                      batch_size: int = 1024, device=None) -> list:
    """Activations of a tensor of images ``(..., C, H, W)`` (any leading dimensions: probes
    per reference, views per item) in eval mode: ``[h]`` the encoder's output, or with a head
    ``[h, layer 1, ..., output]`` (``ProjectionHead.forward(..., return_all=True)``), each of
    shape ``(..., D)`` on the CPU."""
    if not isinstance(images, torch.Tensor) or images.dim() < 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images: expected a tensor of shape (..., C, H, W) with a batch dimension, got {shape}")
    flat = images.reshape(-1, *images.shape[-3:])
    if len(flat) == 0:
        raise ValueError(f"images: expected at least one image, got shape {tuple(images.shape)}")
    layers, _ = extract_features(encoder, TensorDataset(flat, torch.zeros(len(flat))), head=head,
                                 all_layers=head is not None, batch_size=batch_size, device=device)
    layers = layers if head is not None else [layers]
    return [layer.cpu().reshape(*images.shape[:-3], -1) for layer in layers]


def pick_label(labels, label: str | None, name: str = "label") -> torch.Tensor:
    """One label tensor out of what ``extract_features`` returned (a bare label answers to
    ``None`` or ``"label"``, the name ``pyclr.data`` gives it)."""
    if not isinstance(labels, dict):
        if label not in (None, "label"):
            raise ValueError(f"{name}: the items carry one bare label, not named ones; got {label!r} "
                             f"(use None or 'label')")
        return labels
    if label is None:
        if len(labels) != 1:
            raise ValueError(f"{name}: the items carry several labels ({', '.join(labels)}); name one")
        return next(iter(labels.values()))
    if label not in labels:
        raise ValueError(f"{name}: expected one of {', '.join(labels)}, got {label!r}")
    return labels[label]


def unit_rows(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The last dimension's vectors of ``x`` scaled to unit length, in ``dtype``, whatever their
    magnitude: each is first divided by its largest |value|, so its norm
    neither overflows nor underflows (1e20 or 1e-300 rows keep their directions; the cosine
    similarities of pyclr.evaluate and pyclr.analysis); a zero vector stays zero."""
    x = x.to(torch.promote_types(x.dtype, dtype))  # scaled in the wider of the two
    scale = torch.linalg.vector_norm(x, ord=math.inf, dim=-1, keepdim=True)  # max |x| without an abs copy
    y = (x / scale.masked_fill_(scale == 0, 1)).to(dtype)  # one copy: x and y at the peak
    return y.div_(torch.linalg.vector_norm(y, dim=-1, keepdim=True).clamp_min_(1e-12))


def as_features(features, labels, *, label, batch_size, device, name, min_rows=2):
    """``(x, y)`` from a features tensor and labels, or from an ``(encoder, dataset)`` pair;
    ``x`` needs ``min_rows`` rows (a training set 2: one to fit, one held out)."""
    if isinstance(features, tuple):
        if len(features) != 2 or labels is not None:
            raise ValueError(f"{name}: expected a tensor with labels, or an (encoder, dataset) pair without")
        x, all_labels = extract_features(features[0], features[1], batch_size=batch_size, device=device)
        labels = pick_label(all_labels, label)
    else:
        # numpy features (scikit-learn's, say) as they are: a view, converted below like a tensor
        x = torch.from_numpy(np.ascontiguousarray(features)) if isinstance(features, np.ndarray) else features
        if labels is not None:  # a dict: extract_features' labels of items with several
            labels = pick_label(labels, label)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a float tensor (or numpy array) of shape (n, d), got {type(x).__name__}")
    if x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"{name}: expected a float tensor of shape (n, d), got {str(x.dtype).removeprefix('torch.')} "
                         f"of shape {tuple(x.shape)}")
    y = label_tensor(name, labels, (len(x),)) if labels is not None else None
    if (y is None or y.dim() != 1 or len(y) != len(x) or y.is_floating_point() or y.is_complex()
            or y.dtype == torch.bool):
        raise ValueError(f"{name}: expected integer labels of shape ({len(x)},), got "
                         f"{None if y is None else (tuple(y.shape), y.dtype)}")
    if len(y) < min_rows:
        raise ValueError(f"{name}: expected at least {min_rows} rows, got {len(y)}")
    if x.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one feature column, got shape {tuple(x.shape)}")
    if y.min() < 0:
        raise ValueError(f"{name}: expected class labels >= 0, got {y.min().item()}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return x, y.long().to(x.device)
