"""Batched K-Means in PyTorch around a step function (the fused op or the reference).

Every function works on ``B`` independent problems at once, ``x`` of shape ``(B, n, C)``, and
never builds an ``(n, k)`` matrix: seeding keeps a ``(B, n)`` running minimum distance and
scores a handful of candidates at a time, and the Lloyd iterations call the step. Problem
``b`` draws its random numbers from its own generator, seeded with ``seed + b``, so that a
problem solved inside a batch follows the same trajectory as when it is solved alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Tuple

import torch

from .reference import acc_dtype

Step = Callable[[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, ...]]


@dataclass
class Solution:
    centroids: torch.Tensor  # (B, k, C), acc dtype
    labels: torch.Tensor     # (B, n) int64
    inertia: torch.Tensor    # (B,), acc dtype
    n_iter: torch.Tensor     # (B,) int64: Lloyd iterations run


def problem_generators(seed: int, batch: int) -> List[torch.Generator]:
    return [torch.Generator().manual_seed(seed + b) for b in range(batch)]


def local_trials(k: int) -> int:
    """Candidates scored per new centre: scikit-learn's 2 + floor(log k)."""
    return 2 + int(math.log(k))


def gather_points(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b, m]]`` as a ``(B, m, C)`` tensor in the accumulation dtype."""
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[2])).to(acc_dtype(x))


def squared_norms(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(x, dim=-1, dtype=acc_dtype(x)).square()


def squared_distances(x: torch.Tensor, x_norms: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``(B, n, m)`` squared distances from every point to m points of x (m is small).

    The product runs in x's dtype (points of x are exact in it), so that 16-bit features are
    not copied to fp32; seeding needs distances only to sample and rank candidates.
    """
    dots = torch.bmm(x, points.to(x.dtype).transpose(1, 2)).to(x_norms.dtype)
    return (x_norms[..., None] - 2 * dots + points.square().sum(-1)[:, None, :]).clamp_min(0)


def kmeans_plusplus(x: torch.Tensor, k: int, uniforms: torch.Tensor) -> torch.Tensor:
    """Greedy k-means++ seeding (scikit-learn's variant): ``(B, k, C)`` initial centroids.

    The first centre is a uniformly random point; each next one is the best, by the
    potential sum_i min_j ||x_i - c_j||^2, of ``local_trials(k)`` points drawn with probability
    proportional to their squared distance to the nearest centre so far (D^2 sampling).
    ``uniforms``: ``(B, 1 + (k - 1) * local_trials(k))`` float64 numbers in [0, 1).
    """
    n = x.shape[1]
    trials = local_trials(k)
    x_norms = squared_norms(x)
    first = (uniforms[:, 0] * n).long().clamp_max(n - 1)
    chosen = [first]
    closest = squared_distances(x, x_norms, gather_points(x, first[:, None])).squeeze(-1)
    for c in range(1, k):
        u = uniforms[:, 1 + (c - 1) * trials: 1 + c * trials]
        cumulative = closest.double().cumsum(1)
        # All-zero distances (constant features) give index 0: a duplicate centre, never NaN.
        candidates = torch.searchsorted(cumulative, u * cumulative[:, -1:]).clamp_max(n - 1)
        dist = torch.minimum(closest[..., None],
                             squared_distances(x, x_norms, gather_points(x, candidates)))
        best = dist.sum(1).argmin(1)
        closest = dist.gather(2, best[:, None, None].expand(-1, n, 1)).squeeze(-1)
        chosen.append(candidates.gather(1, best[:, None]).squeeze(1))
    return gather_points(x, torch.stack(chosen, 1))


def initial_centroids(x: torch.Tensor, k: int, init: str,
                      generators: List[torch.Generator]) -> torch.Tensor:
    """One restart's ``(B, k, C)`` seeds, drawing from each problem's generator in turn."""
    n = x.shape[1]
    if init == "random":  # k distinct points
        index = torch.stack([torch.randperm(n, generator=g)[:k] for g in generators])
        return gather_points(x, index.to(x.device))
    count = 1 + (k - 1) * local_trials(k)
    uniforms = torch.stack([torch.rand(count, dtype=torch.float64, generator=g) for g in generators])
    return kmeans_plusplus(x, k, uniforms.to(x.device))


def updated_centroids(x, centroids, sums, counts, distances, may_be_empty: bool = True) -> torch.Tensor:
    """Cluster means; the j-th empty cluster of a problem moves onto its j-th farthest point
    from its centroid (scikit-learn's rule), so that no centroid is ever 0/0 = NaN.
    ``may_be_empty=False`` (the caller knows that no count is 0) skips the reseeding ops,
    whose result would then be the means anyway."""
    means = sums / counts.clamp_min(1)[..., None]  # int64 counts convert as in a .to(sums.dtype)
    k = counts.shape[1]
    if k == 1 or not may_be_empty:  # the lone cluster holds every point: never empty
        return means
    empty = counts == 0
    farthest = distances.topk(k - 1, dim=1).indices  # at most k - 1 clusters are empty
    rank = (empty.cumsum(1) - 1).clamp(0, k - 2)
    reseeded = gather_points(x, farthest.gather(1, rank)).to(means.dtype)
    return torch.where(empty[..., None], reseeded, means)


def lloyd(x: torch.Tensor, centroids: torch.Tensor, step: Step, max_iter: int,
          tol: torch.Tensor) -> Solution:
    """Lloyd iterations from ``centroids`` until, per problem, the labels stop changing or the
    centroids move by at most ``tol[b]`` (squared Frobenius norm), or max_iter. Problems that
    converged keep their centroids while the others go on; a last assignment step makes the
    labels and inertia those of the returned centroids (as scikit-learn does).

    Each iteration runs the step on the centroids it just updated, so the step after the last
    update is that final assignment, and reads back one pair of flags (one host sync): whether
    a problem is still active and whether a cluster is empty. Without empty clusters (the
    usual case after the first iterations) the reseeding ops are skipped: on a GPU these small
    ops, not the fused step, would otherwise dominate an iteration on small problems."""
    batch = x.shape[0]
    active = torch.ones(batch, dtype=torch.bool, device=x.device)
    n_iter = torch.zeros(batch, dtype=torch.int64, device=x.device)
    labels, distances, sums, counts = step(x, centroids)
    previous, may_be_empty = None, True  # nothing read back yet: take the general path
    for _ in range(max_iter):
        new = updated_centroids(x, centroids, sums, counts, distances, may_be_empty)
        converged = (new - centroids).square().sum((1, 2)) <= tol
        if previous is not None:
            converged |= (labels == previous).all(1)
        centroids = torch.where(active[:, None, None], new, centroids)
        n_iter += active
        active &= ~converged
        previous = labels
        labels, distances, sums, counts = step(x, centroids)
        any_active, may_be_empty = torch.stack((active.any(), (counts == 0).any())).tolist()
        if not any_active:
            break
    return Solution(centroids, labels, distances.sum(1), n_iter)


def mean_variance(x: torch.Tensor) -> torch.Tensor:
    """Per problem, the mean over channels of the variance over points (scikit-learn scales
    tol by it). Reduced in x's dtype with fp32 accumulation: no copy of x."""
    return x.var(dim=1, correction=0).to(acc_dtype(x)).mean(-1)


def keep_better(best: Solution, new: Solution) -> Solution:
    """Per problem, the solution of lower inertia (the earlier one on ties)."""
    better = new.inertia < best.inertia

    def pick(a, b):
        return torch.where(better.view(-1, *[1] * (a.dim() - 1)), b, a)

    return Solution(pick(best.centroids, new.centroids), pick(best.labels, new.labels),
                    pick(best.inertia, new.inertia), pick(best.n_iter, new.n_iter))


def centred(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(x - mean, mean)`` per problem, the mean ``(B, 1, C)`` in the accumulation dtype and the
    difference rounded once to x's dtype. The step's distances ``|x|^2 - 2 x.c + |c|^2`` lose
    about ``eps |x|^2`` each: far from the origin (points at 1e3 spread by 0.05) that swamps
    the distances themselves (the inertia came out 8x too large, and at 1e4 the labels were
    noise). Centred, the loss is relative to the spread, as in scikit-learn, which centres too."""
    mean = x.mean(dim=1, keepdim=True, dtype=acc_dtype(x))
    return (x.to(mean.dtype) - mean).to(x.dtype), mean


def solve(x: torch.Tensor, k: int, step: Step, n_init: int, max_iter: int, tol: float,
          init: str, seed: int) -> Solution:
    """Best of ``n_init`` seeded Lloyd runs, per problem, on the centred points (the
    centroids are moved back: the partition and inertia do not depend on the shift)."""
    generators = problem_generators(seed, x.shape[0])
    x, mean = centred(x)
    tol_abs = tol * mean_variance(x)
    best = None
    for _ in range(n_init):
        run = lloyd(x, initial_centroids(x, k, init, generators), step, max_iter, tol_abs)
        best = run if best is None else keep_better(best, run)
    best.centroids = best.centroids + mean
    return best
