"""Hermann et al. (2020): the hierarchical dataset, whose input channels are the levels of a
"semantic" hierarchy of uniform-noise masks."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from .._checks import as_sequence, check_int, check_side, is_int
from ._util import check_index, check_seed, salt


# the item count must be a valid index; levels bound the channels (one per level) and the
# time to check (levels = 1e6 hung in arithmetic on 2**1e6 leaves)
MAX_LEVELS, MAX_LEAVES = 64, 2 ** 63 - 1


class Hierarchy(Dataset):
    """One item per leaf of a tree with ``levels`` levels and ``branching`` children per node
    (an int, or one int per level): 10⁴ items by default.

    Channel ``c`` (one per level) holds the uniform-noise mask (``mask_size``², values in
    [0, 1)) of the item's ancestor at level ``c``; level ``c`` has ``b_0 · … · b_c`` nodes, so
    10^(c+1) masks with branching 10 (SPEC §4), and the last channel is the leaf's own mask.
    Items sharing their level-``c`` ancestor share channels ``0..c`` exactly. Masks are drawn
    from a generator seeded by (``seed``, level, node), so no table of masks is stored.

    Item ``i`` is the leaf whose path, read as digits (mixed radix, top level first), is ``i``.
    Labels: ``path`` ((levels,), the child index at each level) and ``ancestors`` ((levels,),
    the node id at each level: ``i // (b_{c+1} · … · b_{L-1})``, a class label per level).
    Augmentation (random 28×28 crops, no resize) is left to ``pyclr.data.augment``.
    """

    def __init__(self, levels: int = 4, branching=10, mask_size: int = 38, seed: int = 0):
        self.levels = check_int("levels", levels, 1, MAX_LEVELS)
        self.branching = self._check_branching(branching, self.levels)
        # nodes[c]: how many nodes level c has (b_0 · … · b_c); the last level's are the items
        self.nodes = [math.prod(self.branching[: c + 1]) for c in range(self.levels)]
        if self.nodes[-1] > MAX_LEAVES:
            raise ValueError(f"branching: expected at most {MAX_LEAVES} leaves (items) in all, got {self.nodes[-1]}")
        self.mask_size = check_side("mask_size", mask_size)
        self.seed = check_seed(seed)

    @staticmethod
    def _check_branching(branching, levels: int) -> tuple[int, ...]:
        if is_int(branching):
            branching = (branching,) * levels
        values = as_sequence(branching)  # not a dict (its keys) or a set (any order)
        if values is None:
            raise TypeError(f"branching: expected an int or a sequence of {levels} ints, "
                            f"got {type(branching).__name__}")
        branching = tuple(values)
        if len(branching) != levels:
            raise ValueError(f"branching: expected {levels} values (one per level), got {len(branching)}")
        return tuple(check_int("branching", b, 1) for b in branching)

    def __len__(self) -> int:
        return self.nodes[-1]

    def ancestors(self, index: int) -> list[int]:
        """Node id of leaf ``index``'s ancestor at each level (the last is the leaf itself)."""
        i = check_index(index, len(self))
        return [i // (len(self) // n) for n in self.nodes]

    def mask(self, level: int, node: int) -> torch.Tensor:
        """The (mask_size, mask_size) noise mask of ``node`` at ``level``."""
        level = check_int("level", level, 0, self.levels - 1)
        node = check_int("node", node, 0, self.nodes[level] - 1)
        rng = np.random.default_rng([self.seed, salt("Hierarchy"), level, node])
        return torch.from_numpy(rng.random((self.mask_size, self.mask_size), dtype=np.float32))

    def compose(self, nodes) -> torch.Tensor:
        """An image from one node id per level, consistent with the tree or not (the channel
        preference analysis builds probes that match a reference in one channel only)."""
        nodes = list(nodes)
        if len(nodes) != self.levels:
            raise ValueError(f"nodes: expected {self.levels} node ids (one per level), got {len(nodes)}")
        return torch.stack([self.mask(c, n) for c, n in enumerate(nodes)])

    def __getitem__(self, index):
        ancestors = self.ancestors(index)
        path = [a % b for a, b in zip(ancestors, self.branching)]
        labels = {"path": torch.tensor(path), "ancestors": torch.tensor(ancestors)}
        return self.compose(ancestors), labels
