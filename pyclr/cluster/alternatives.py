"""The other clusterings of the [Re] paper's Experiment 3, via scikit-learn: Ward
agglomerative clustering and bisecting K-Means, per image (or on one set of points)."""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ._external import import_sklearn_cluster, to_numpy
from .._checks import check_choice, describe, is_int
from .kmeans import ClusterResult, _check_dtype, _check_k, _check_seed, _check_values, unscaled
from .reference import acc_dtype

CONNECTIVITIES = (None, "grid")


def ward(x: torch.Tensor, k: Union[int, Sequence[int]], connectivity: Optional[str] = None
         ) -> Union[ClusterResult, Dict[int, ClusterResult]]:
    """Ward agglomerative clustering (scikit-learn's ``ward_tree``, as
    ``AgglomerativeClustering(linkage="ward")`` builds it) of each image's pixels, or of
    ``(n, C)`` points.

    Args:
        x: ``(B, H, W, C)`` features (each image clustered separately) or ``(n, C)`` points.
        k: clusters, ``1 <= k <=`` points per problem; or several values of k: then each
            problem's merge tree is built once and cut at every k (the tree is what costs:
            about 25 s for 12,544 points on one CPU core), and a ``{k: result}`` dict returns.
        connectivity: ``None`` (scikit-learn's default, as in the [Re] paper) or ``"grid"``: only
            4-neighbouring pixels may merge (``grid_to_graph``), which gives spatially
            contiguous clusters; needs ``(B, H, W, C)`` features.

    Returns a :class:`ClusterResult` as :func:`kmeans` in per-image mode, with the cluster
    means as centroids and ``n_iter`` None. The partition at each k is scikit-learn's
    ``AgglomerativeClustering(n_clusters=k, linkage="ward")``'s (cluster numbers may differ).
    """
    check_choice("connectivity", connectivity, CONNECTIVITIES)
    ks = list(k) if isinstance(k, Sequence) and not isinstance(k, str) else [k]
    if not ks:
        raise ValueError("k: expected an int or a non-empty list of ints, got []")
    problems, scale = _problems(x, ks[0])  # reshapes and scans x once
    for kk in ks[1:]:
        _check_k(kk, problems.shape[1])
    ks = [int(kk) for kk in ks]  # numpy's too: the result's keys
    if connectivity == "grid" and x.dim() != 4:
        raise ValueError(f"connectivity='grid' needs (B, H, W, C) features, got shape {tuple(x.shape)}")
    sklearn_cluster = import_sklearn_cluster()
    graph = None
    if connectivity == "grid":
        from sklearn.feature_extraction.image import grid_to_graph

        graph = grid_to_graph(x.shape[1], x.shape[2])
    acc = acc_dtype(problems)
    # a single point has no merges (scikit-learn's ward_tree fails on it): cut_tree gives label 0
    trees = [sklearn_cluster.ward_tree(to_numpy(p, acc), connectivity=graph)[0] if len(p) > 1
             else np.zeros((0, 2), dtype=np.intp) for p in problems]
    results = {kk: _cluster_each(x, problems, scale, kk,
                                 lambda points, b, kk=kk: cut_tree(trees[b], len(points), kk))
               for kk in dict.fromkeys(ks)}
    return results[ks[0]] if is_int(k) else results


def cut_tree(children: np.ndarray, n_leaves: int, k: int) -> np.ndarray:
    """The ``k`` clusters of a merge tree (``children[i]`` = the two nodes merged into node
    ``n_leaves + i``, in merge order): undo the last ``k - 1`` merges. Labels 0..k-1 by first
    appearance."""
    parent = np.arange(2 * n_leaves - 1)
    merges = n_leaves - k
    parent[children[:merges].ravel()] = np.repeat(np.arange(n_leaves, n_leaves + merges), 2)
    while True:  # pointer doubling: every node's pointer jumps to its top node in log(depth) rounds
        jumped = parent[parent]
        if np.array_equal(jumped, parent):
            break
        parent = jumped
    _, first, labels = np.unique(parent[:n_leaves], return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # number clusters by their first leaf
    return order[labels]


def bisecting(x: torch.Tensor, k: int, seed: int = 0) -> ClusterResult:
    """Bisecting K-Means (``sklearn.cluster.BisectingKMeans`` with its defaults, as in the [Re]
    paper) of each image's pixels, or of ``(n, C)`` points; image ``b`` is seeded with
    ``seed + b``. Shapes and result as :func:`ward`."""
    seed = _check_seed(seed)
    problems, scale = _problems(x, k)
    sklearn_cluster = import_sklearn_cluster()

    def fit(points: np.ndarray, b: int) -> np.ndarray:
        return sklearn_cluster.BisectingKMeans(n_clusters=k, random_state=seed + b).fit_predict(points)

    return _cluster_each(x, problems, scale, k, fit)


def _problems(x, k) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    if not isinstance(x, torch.Tensor) or x.dim() not in (2, 4):
        raise ValueError(f"x: expected a (B, H, W, C) or (n, C) tensor, got {describe(x)}")
    _check_dtype(x)
    if x.numel() == 0:
        raise ValueError(f"x: expected at least one point and one channel, got shape {tuple(x.shape)}")
    points = x.detach().reshape(x.shape[0] if x.dim() == 4 else 1, -1, x.shape[-1])
    _check_k(k, points.shape[1])
    return _check_values(points)


def _cluster_each(x: torch.Tensor, problems: torch.Tensor, scale: Optional[torch.Tensor], k: int,
                  fit: Callable[[np.ndarray, int], np.ndarray]) -> ClusterResult:
    """Labels from ``fit`` per problem, then each cluster's mean and the inertia around them
    (computed on the problems as scaled by ``_check_values``, then scaled back)."""
    acc = acc_dtype(problems)
    labels = torch.stack([torch.as_tensor(fit(to_numpy(p, acc), b), dtype=torch.int64)
                          for b, p in enumerate(problems)]).to(x.device)
    points = problems.to(acc)
    sums = torch.zeros(points.shape[0], k, points.shape[2], dtype=acc, device=x.device)
    sums.scatter_add_(1, labels[..., None].expand_as(points), points)
    counts = torch.zeros(points.shape[0], k, dtype=acc, device=x.device)
    counts.scatter_add_(1, labels, torch.ones_like(labels, dtype=acc))
    centroids = sums / counts.clamp_min(1)[..., None]
    inertia = (points - centroids.gather(1, labels[..., None].expand_as(points))).square().sum((1, 2))
    if scale is not None:
        centroids, inertia = unscaled(centroids, inertia, scale)
    labels = labels.reshape(x.shape[:-1])
    if x.dim() == 4:
        return ClusterResult(labels, centroids, inertia)
    return ClusterResult(labels, centroids[0], inertia[0])
