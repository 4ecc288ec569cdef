"""Hermann et al. (2020)'s similarity analyses of the hierarchy data: channel preference
(Fig. 2, B.1) and hierarchically constrained similarity (Fig. B.2, B.3)."""
from __future__ import annotations

from typing import NamedTuple

import torch

from .._checks import check_choice, check_int
from ..data._util import check_seed
from ..data.hierarchy import Hierarchy
from ..evaluate.features import unit_rows
from ._checks import check_activations, check_class_labels

SIMILARITY_BLOCK = 1 << 22  # entries of the similarity matrix held at a time


class ChannelProbes(NamedTuple):
    references: torch.Tensor  # (n, C, S, S) the reference items
    probes: torch.Tensor      # (n, C + 1, C, S, S) probe c matches its reference in channel c only;
    #                           probe C (the baseline) in no channel


class ChannelPreference(NamedTuple):
    mean: torch.Tensor        # (P,) mean cosine similarity of the references to each kind of probe
    sem: torch.Tensor         # (P,) its standard error over the references
    similarity: torch.Tensor  # (n, P) every reference's similarity to each of its probes


class HierarchicalSimilarity(NamedTuple):
    within: torch.Tensor        # (L,) mean similarity of distinct items in the same class at each level
    across: torch.Tensor        # (L,) ... in different classes at that level with the same parent
    across_view: float          # mean similarity of two views of the same item
    within_pairs: torch.Tensor  # (L,) how many (view, view) pairs each mean is over; 0 means NaN
    across_pairs: torch.Tensor  # (L,)
    across_view_pairs: int = 0  # how many pairs across_view is over; 0 (one view per item) means NaN


def channel_probes(dataset: Hierarchy, num_references: int = 200, *, source: str = "train",
                   items=None, seed: int = 0) -> ChannelProbes:
    """Reference items and, for each, probes that match it in exactly one channel (one per
    level of the hierarchy) plus a baseline probe that matches it in none.

    ``source="train"``: references are items of ``dataset`` (of ``items``, e.g. the training
    indices, when given) and the other channels of a probe are masks of the dataset: another
    node at that level than the reference's, among the ancestors of ``items`` when given, so
    that every channel is one the model saw in training (the paper: "probe item channels were
    sampled from masks seen during training"; drawn from every node, about 10% of the bottom
    channels of a probe came from held-out items). ``source="random"``: references and the
    other channels are fresh uniform-noise masks (Fig. B.1).
    """
    if not isinstance(dataset, Hierarchy):
        raise TypeError(f"dataset: expected a pyclr.data.Hierarchy, got {type(dataset).__name__}")
    n = check_int("num_references", num_references, 1)
    check_choice("source", source, ("train", "random"))
    generator = torch.Generator().manual_seed(check_seed(seed))
    levels, size = dataset.levels, dataset.mask_size
    if source == "random":
        if items is not None:
            raise ValueError("items: only train references come from the dataset's items (source='train')")

        def fresh():
            return torch.rand(size, size, generator=generator)
        references = torch.rand(n, levels, size, size, generator=generator)
        probes = torch.stack([torch.stack([torch.stack([ref[c] if c == match else fresh() for c in range(levels)])
                                           for match in range(levels + 1)]) for ref in references])
        return ChannelProbes(references, probes)
    if any(nodes < 2 for nodes in dataset.nodes):
        raise ValueError("dataset: every level needs at least 2 nodes, so a probe can differ from its reference")
    pool = torch.arange(len(dataset)) if items is None else _check_items(items, len(dataset))
    # per level, the node ids a probe's other channels are drawn from
    seen = [torch.arange(count) for count in dataset.nodes] if items is None else _seen_nodes(dataset, pool)
    references, probes = [], []
    for item in pool[torch.randint(len(pool), (n,), generator=generator)].tolist():
        own = dataset.ancestors(item)
        references.append(dataset.compose(own))
        kinds = []
        for match in range(levels + 1):
            nodes = [own[c] if c == match else _other_node(own[c], seen[c], generator) for c in range(levels)]
            kinds.append(dataset.compose(nodes))
        probes.append(torch.stack(kinds))
    return ChannelProbes(torch.stack(references), torch.stack(probes))


def _check_items(items, length: int) -> torch.Tensor:
    pool = torch.as_tensor(items)
    if pool.dim() != 1 or len(pool) == 0 or pool.is_floating_point() or pool.dtype == torch.bool:
        raise ValueError(f"items: expected a non-empty 1-D sequence of item indices, got {pool.dtype} "
                         f"of shape {tuple(pool.shape)}")
    if pool.min() < 0 or pool.max() >= length:
        raise ValueError(f"items: expected indices in 0..{length - 1}, got {pool.min().item()}..{pool.max().item()}")
    return pool.long()


def _seen_nodes(dataset: Hierarchy, pool: torch.Tensor) -> list:
    """Per level, the sorted node ids that are ancestors of the items of ``pool``."""
    ancestors = torch.tensor([dataset.ancestors(i) for i in pool.tolist()]).view(-1, dataset.levels)
    seen = [ancestors[:, c].unique() for c in range(dataset.levels)]
    for c, nodes in enumerate(seen):
        if len(nodes) < 2:
            raise ValueError(f"items: at level {c} they all descend from one node, so a probe cannot differ "
                             "from its reference there with a mask of these items; give items of 2 nodes or more")
    return seen


def _other_node(node: int, nodes: torch.Tensor, generator: torch.Generator) -> int:
    """A node other than ``node`` drawn uniformly from ``nodes``, a sorted tensor of node ids
    that holds it."""
    position = int(torch.searchsorted(nodes, node))
    other = int(torch.randint(len(nodes) - 1, (1,), generator=generator))
    return int(nodes[other + (other >= position)])


@torch.no_grad()
def channel_preference(references: torch.Tensor, probes: torch.Tensor) -> ChannelPreference:
    """Cosine similarity of each reference's activations (n, D) to those of its P probes
    (n, P, D), averaged over the references: the higher, the more the layer weighs the
    channel the probe shares (Hermann et al., Fig. 2)."""
    ref = check_activations("references", references, 2, "(n, D)")
    pro = check_activations("probes", probes, 3, "(n, P, D)")
    if pro.shape[0] != ref.shape[0] or pro.shape[2] != ref.shape[1]:
        raise ValueError(f"probes: expected shape ({ref.shape[0]}, P, {ref.shape[1]}) to match references "
                         f"{tuple(ref.shape)}, got {tuple(pro.shape)}")
    sim = (unit_rows(ref, torch.float64).unsqueeze(1) * unit_rows(pro, torch.float64)).sum(2)
    n = sim.shape[0]
    sem = sim.std(0) / n ** 0.5 if n > 1 else torch.zeros(sim.shape[1], dtype=sim.dtype, device=sim.device)
    return ChannelPreference(sim.mean(0).float(), sem.float(), sim.float())


@torch.no_grad()
def hierarchical_similarity(views: torch.Tensor, ancestors) -> HierarchicalSimilarity:
    """Within- and across-class cosine similarity at each level of a hierarchy (Hermann et
    al., Fig. B.2): ``views`` (n, V, D) are the activations of V views of n items and
    ``ancestors`` (n, L) the class (node id) of each item at each level, top level first
    (``Hierarchy`` items carry it as ``labels["ancestors"]``).

    At level l, *within* averages the similarity of every pair of views of two distinct items
    that share their level-l class; *across* (hierarchically constrained) of distinct items
    whose level-l classes differ but whose level-(l-1) classes agree (any two classes at the
    top level). *across_view* averages pairs of distinct views of one item. A level with no
    such pair (the leaf level, when every item is its own class) reports NaN with a pair
    count of 0, and so does *across_view* with one view per item (``across_view_pairs`` 0).
    """
    x = check_activations("views", views, 3, "(n, V, D)")
    n, v, _ = x.shape
    try:
        labels = torch.as_tensor(ancestors)
    except (TypeError, ValueError, RuntimeError):  # None, a string: torch's dtype errors
        raise TypeError(f"ancestors: expected an (n, L) integer tensor, got {type(ancestors).__name__}") from None
    if labels.dim() != 2 or labels.shape[0] != n:
        raise ValueError(f"ancestors: expected shape ({n}, L), got {tuple(labels.shape)}")
    labels = check_class_labels("ancestors", labels, tuple(labels.shape), x.device)
    z = unit_rows(x.reshape(n * v, -1), torch.float64)
    count = n * v
    item = torch.arange(n, device=x.device).repeat_interleave(v)
    cls = labels[item]  # (n V, L)
    levels = labels.shape[1]
    # sums and pair counts of [within, across] per level, then across_view: a block of rows of
    # the (nV, nV) similarity matrix at a time, so memory is O(SIMILARITY_BLOCK), not (nV)^2
    sums = torch.zeros(2 * levels + 1, dtype=torch.float64, device=x.device)
    pairs = torch.zeros(2 * levels + 1, dtype=torch.int64, device=x.device)
    step = max(1, SIMILARITY_BLOCK // count)
    every = torch.arange(count, device=x.device)
    for start in range(0, count, step):
        rows = every[start:start + step]
        sim = z[rows] @ z.T
        same_item = item[rows].view(-1, 1) == item.view(1, -1)
        parent_same = torch.ones_like(same_item)

        def add(i, mask):  # no boolean indexing: it would wait for the GPU each time
            sums[i] += torch.where(mask, sim, 0).sum()
            pairs[i] += mask.sum()
        for level in range(levels):
            same = cls[rows, level].view(-1, 1) == cls[:, level].view(1, -1)
            add(2 * level, same & ~same_item)
            add(2 * level + 1, ~same & parent_same)
            parent_same = same
        add(2 * levels, same_item & (rows.view(-1, 1) != every.view(1, -1)))
    means = [total / k if k else float("nan") for total, k in zip(sums.tolist(), pairs.tolist())]
    within, across, across_view = means[0:-1:2], means[1:-1:2], means[-1]
    within_pairs, across_pairs = pairs[0:-1:2].tolist(), pairs[1:-1:2].tolist()
    return HierarchicalSimilarity(torch.tensor(within), torch.tensor(across), across_view,
                                  torch.tensor(within_pairs), torch.tensor(across_pairs), int(pairs[-1]))
