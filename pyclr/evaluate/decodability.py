"""Decodability (Hermann et al., Fig. 3): how well a linear probe reads each label from each
layer of the projection head."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .._checks import check_options, describe
from .features import extract_features, pick_label
from .probe import linear_probe


def decodability(encoder: nn.Module, head: nn.Module, dataset, label_names: Sequence[str], *,
                 splits: Mapping[str, tuple] | None = None, test_fraction: float = 0.2,
                 batch_size: int = 256, device=None, seed: int = 0, **probe_options) -> dict:
    """``{layer: {label: accuracy}}`` for layer 0 (the head's input, the representation) to
    the head's output, and each label in ``label_names``.

    ``splits`` may give a label its own ``(train_indices, test_indices)`` (the sprites
    experiment holds out scales for colour, colours for scale and position); other labels
    use a seeded random ``test_fraction`` split. ``probe_options`` go to
    :func:`linear_probe` (``weight_decay``, ``max_iter``).
    """
    if isinstance(label_names, str) or not label_names:
        raise ValueError(f"label_names: expected a non-empty list of label names, got {label_names!r}")
    # before any feature is extracted; decodability sets the probe's data, labels, split and seed
    check_options("probe_options", linear_probe, probe_options,
                  fixed=("features", "labels", "test_features", "test_labels", "label", "test_fraction",
                         "seed", "device", "batch_size"))
    splits = dict(splits or {})
    unknown = set(splits) - set(label_names)
    if unknown:
        raise ValueError(f"splits: names labels not in label_names: {sorted(unknown)}")
    splits = {name: _check_split(f"splits[{name!r}]", split, len(dataset)) for name, split in splits.items()}
    layers, labels = extract_features(encoder, dataset, head=head, all_layers=True,
                                      batch_size=batch_size, device=device)
    result = {}
    for index, x in enumerate(layers):
        result[index] = {}
        for name in label_names:
            y = pick_label(labels, name, name="label_names").to(x.device)
            if name in splits:
                train, test = (i.to(x.device) for i in splits[name])
                probe = linear_probe(x[train], y[train], x[test], y[test], seed=seed, **probe_options)
            else:
                probe = linear_probe(x, y, test_fraction=test_fraction, seed=seed, **probe_options)
            result[index][name] = probe.accuracy
    return result


def _check_split(name: str, split, n: int) -> tuple:
    """``(train_indices, test_indices)``: two non-empty, disjoint sets of item indices in
    ``0..n-1`` (a float index would be truncated, a negative one wrap around)."""
    if not isinstance(split, (tuple, list, torch.Tensor, np.ndarray)) or len(split) != 2:
        raise TypeError(f"{name}: expected a pair (train_indices, test_indices), got {describe(split)}")
    out = []
    for part, indices in zip(("train", "test"), split):
        t = torch.as_tensor(indices.cpu() if isinstance(indices, torch.Tensor) else indices)
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"{name}: expected integer {part} indices, got {t.dtype}")
        if t.dim() != 1 or t.numel() == 0:
            raise ValueError(f"{name}: expected non-empty 1-d {part} indices, got shape {tuple(t.shape)}")
        if int(t.min()) < 0 or int(t.max()) >= n:
            raise ValueError(f"{name}: expected {part} indices in 0..{n - 1} (the dataset's items), "
                             f"got {int(t.min())}..{int(t.max())}")
        out.append(t.long())
    if torch.isin(out[0], out[1]).any():
        raise ValueError(f"{name}: the train and test indices overlap (the probe would be tested on its training items)")
    return tuple(out)
