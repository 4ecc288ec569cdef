"""A fixed palette and colours kept consistent across the columns (values of k) of a figure.

Colours are indices into :func:`palette`. Across a row of label maps (k = 2, 4, 6, 8), each
cluster takes the colour of the cluster it overlaps most at the previous k (SPEC.md section
3), so that a region that splits keeps its colour on its larger part.
"""
from __future__ import annotations

import colorsys
import functools
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import torch

from .._checks import check_int
from ._checks import cluster_count, int_tensor

# Kelly's colours of maximum contrast, the most distinct first, without white, black, grey and
# olive green (which vanish in an overlay on a grey-scale image), then indigo and cyan: 20.
PALETTE = np.array([
    (0xF3, 0xC3, 0x00), (0x87, 0x56, 0x92), (0xF3, 0x84, 0x00), (0xA1, 0xCA, 0xF1),
    (0xBE, 0x00, 0x32), (0xC2, 0xB2, 0x80), (0x00, 0x88, 0x56), (0xE6, 0x8F, 0xAC),
    (0x00, 0x67, 0xA5), (0xF9, 0x93, 0x79), (0x60, 0x4E, 0x97), (0xF6, 0xA6, 0x00),
    (0xB3, 0x44, 0x6C), (0xDC, 0xD3, 0x00), (0x88, 0x2D, 0x17), (0x8D, 0xB6, 0x00),
    (0x65, 0x45, 0x22), (0xE2, 0x58, 0x22), (0x2E, 0x2A, 0xB8), (0x17, 0xBE, 0xCF),
], dtype=np.uint8)
PALETTE.flags.writeable = False

GOLDEN_RATIO = (5 ** 0.5 - 1) / 2

# Cluster ids (and k) a figure is coloured for, and palette indices: bounded so that a stray
# huge label is an error instead of an (k_prev x k) overlap table or a palette of that size.
# Filling takes the lowest free indices, below |previous colours| + k <= MAX_COLOURS.
MAX_CLUSTERS = 4096
MAX_COLOURS = 2 * MAX_CLUSTERS


def palette(n: int) -> np.ndarray:
    """``(n, 3)`` distinct uint8 RGB colours, the same on every call: :data:`PALETTE`, then
    (for large k) hues spaced by the golden ratio, saturated and bright, a ring of
    ``RING`` hues at a time, each ring at another saturation and value; a colour that rounds
    to one already taken is skipped (one ring alone repeated its 20th colour at index 630)."""
    n = check_int("n", n, 0, MAX_COLOURS)
    return _table()[:n].copy()


RING = 610  # golden-ratio hues at one saturation and value repeat an RGB colour after 610


@functools.lru_cache(maxsize=None)
def _table() -> np.ndarray:
    """All MAX_COLOURS colours, built once (25 ms) from local state: the same in every thread."""
    colours = [tuple(c) for c in PALETTE.tolist()]
    taken, i = set(colours), 0
    while len(colours) < MAX_COLOURS:
        ring = i // RING
        # the first ring as before (saturation 0.75, value 0.95); later ones spread over
        # saturation 0.45-0.95 and value 0.6-0.95 by the golden ratio and its square
        s = 0.75 if ring == 0 else 0.45 + 0.5 * ((ring * GOLDEN_RATIO) % 1.0)
        v = 0.95 if ring == 0 else 0.6 + 0.35 * ((ring * GOLDEN_RATIO ** 2) % 1.0)
        rgb = tuple(round(c * 255) for c in colorsys.hsv_to_rgb((i * GOLDEN_RATIO) % 1.0, s, v))
        i += 1
        if rgb not in taken:
            taken.add(rgb)
            colours.append(rgb)
    table = np.array(colours, dtype=np.uint8)
    table.flags.writeable = False
    return table


def colourise(labels, colours) -> np.ndarray:
    """``(..., )`` labels -> ``(..., 3)`` uint8 RGB: cluster ``j`` painted with colour
    ``colours[j]`` (palette indices, one per cluster, e.g. from :func:`consistent_colours`)."""
    labels = int_tensor("labels", labels, (1, 2, 3, 4), below=MAX_CLUSTERS).cpu()
    colours = _colour_indices("colours", colours)
    if int(labels.max()) >= len(colours):
        raise ValueError(f"colours: expected one colour per cluster ({int(labels.max()) + 1}), "
                         f"got {len(colours)}")
    return palette(int(colours.max()) + 1)[colours[labels].numpy()]


def match_colours(prev_labels, labels, prev_colours, k: Optional[int] = None) -> torch.Tensor:
    """The colours of ``labels``'s clusters given those of ``prev_labels`` (the previous k).

    Each cluster claims the colour of the previous cluster it overlaps most (counted in
    pixels; the lower previous index on ties). When two clusters claim the same colour, the
    larger overlap keeps it (the lower cluster index on ties). Clusters that lose, and empty
    clusters, take the lowest palette indices used neither by ``prev_colours`` nor at this
    k, the larger clusters first: a new region never wears a colour of the previous column.

    Args:
        prev_labels, labels: label maps of the same shape (any number of dimensions: a batch
            of maps shares its colours, as cross-image clusters do).
        prev_colours: ``(k_prev,)`` palette indices of ``prev_labels``'s clusters.
        k: clusters of ``labels`` (default ``labels.max() + 1``).

    Returns ``(k,)`` int64 palette indices.
    """
    prev_colours = _colour_indices("prev_colours", prev_colours)
    overlap = _overlap(prev_labels, labels, len(prev_colours), k)
    best_prev = overlap.argmax(0)
    best = overlap.gather(0, best_prev[None])[0]
    colours = torch.full((overlap.shape[1],), -1, dtype=torch.int64)
    claimed = set()
    for j in sorted(range(len(colours)), key=lambda j: (-int(best[j]), j)):
        if best[j] > 0 and int(best_prev[j]) not in claimed:
            claimed.add(int(best_prev[j]))
            colours[j] = prev_colours[best_prev[j]]
    used = set(prev_colours.tolist())
    return _fill_unassigned(colours, overlap.sum(0), used)


def consistent_colours(label_maps: Union[Sequence, Mapping], ks: Optional[Sequence[int]] = None):
    """Palette indices for a row of label maps (one per value of k, in column order).

    The first map's clusters take colours 0, 1, ... by decreasing size (so the colouring does
    not depend on the arbitrary order of a clustering's labels); each next map follows
    :func:`match_colours`. ``label_maps``: a sequence of label maps of one shape, or a mapping
    ``{k: labels}`` (taken in its order); ``ks`` optionally gives each map's cluster count.
    Returns a list of ``(k,)`` int64 tensors, or a dict with the mapping's keys.
    """
    keys = list(label_maps) if isinstance(label_maps, Mapping) else None
    maps = [label_maps[key] for key in keys] if keys is not None else list(label_maps)
    if not maps:
        raise ValueError("label_maps: expected at least one label map, got none")
    ks = [None] * len(maps) if ks is None else list(ks)
    if len(ks) != len(maps):
        raise ValueError(f"ks: expected one value per label map ({len(maps)}), got {len(ks)}")
    first = int_tensor("label_maps[0]", maps[0], (1, 2, 3, 4), below=MAX_CLUSTERS)
    sizes = torch.bincount(first.flatten().cpu(), minlength=_cluster_count("ks[0]", first, ks[0]))
    colours = [_fill_unassigned(torch.full((len(sizes),), -1, dtype=torch.int64), sizes, set())]
    for i in range(1, len(maps)):
        colours.append(match_colours(maps[i - 1], maps[i], colours[-1], ks[i]))
    return dict(zip(keys, colours)) if keys is not None else colours


def _colour_indices(name: str, colours) -> torch.Tensor:
    colours = int_tensor(name, colours, (1,), below=MAX_COLOURS).cpu()
    if len(set(colours.tolist())) != len(colours):
        raise ValueError(f"{name}: expected distinct palette indices, got {colours.tolist()}")
    return colours


def _cluster_count(name: str, labels: torch.Tensor, k) -> int:
    k = cluster_count(name, labels, k)
    if k > MAX_CLUSTERS:
        raise ValueError(f"{name}: expected at most {MAX_CLUSTERS} clusters, got {k}")
    return k


def _overlap(prev_labels, labels, k_prev: int, k) -> torch.Tensor:
    """``(k_prev, k)`` pixel counts of each (previous cluster, cluster) pair."""
    prev_labels = int_tensor("prev_labels", prev_labels, (1, 2, 3, 4), below=MAX_CLUSTERS).cpu()
    labels = int_tensor("labels", labels, (1, 2, 3, 4), below=MAX_CLUSTERS).cpu()
    if prev_labels.shape != labels.shape:  # (8, 8) and (4, 16) would pair unrelated pixels
        raise ValueError(f"labels: expected the shape of prev_labels {tuple(prev_labels.shape)}, "
                         f"got {tuple(labels.shape)}")
    prev_labels, labels = prev_labels.flatten(), labels.flatten()
    if int(prev_labels.max()) >= k_prev:
        raise ValueError(f"prev_colours: expected one colour per cluster of prev_labels "
                         f"({int(prev_labels.max()) + 1}), got {k_prev}")
    k = _cluster_count("k", labels, k)
    return torch.bincount(prev_labels * k + labels, minlength=k_prev * k).reshape(k_prev, k)


def _fill_unassigned(colours: torch.Tensor, sizes: torch.Tensor, used: set) -> torch.Tensor:
    """Gives each cluster without a colour (-1) the lowest free palette index, larger
    clusters first (the lower index on ties)."""
    taken = used | set(colours[colours >= 0].tolist())
    free = (c for c in range(len(taken) + len(colours)) if c not in taken)
    for j in sorted(range(len(colours)), key=lambda j: (-int(sizes[j]), j)):
        if colours[j] < 0:
            colours[j] = next(free)
    return colours
