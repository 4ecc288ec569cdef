"""Plain-PyTorch K-Means step: the specification of ``torch.ops.pyclr.kmeans_step`` in code.

It builds the ``(B, n, k)`` distance matrix that the fused kernels never store, so it is for
tests and for devices without a kernel, not for large inputs.
"""
from __future__ import annotations

import torch


def acc_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype of centroids, distances and sums for points of dtype ``x.dtype``."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def kmeans_step(x: torch.Tensor, centroids: torch.Tensor):
    r"""One Lloyd iteration for ``B`` independent problems (contract: ``csrc/kmeans/kmeans.h``).

    Args:
        x: ``(B, n, C)`` points.
        centroids: ``(B, k, C)`` in the accumulation dtype (float64 for float64 ``x``, else
            float32).

    Returns ``(labels, distances, sums, counts)``: ``labels`` ``(B, n)`` int64, the lowest
    :math:`j` minimising :math:`\|x_i - c_j\|^2`; ``distances`` ``(B, n)``, that minimum as
    :math:`\max(0, \|x\|^2 - 2 x \cdot c + \|c\|^2)`; ``sums`` ``(B, k, C)`` and ``counts``
    ``(B, k)`` int64, the sum and number of the points of each cluster.
    """
    acc = acc_dtype(x)
    xa, c = x.to(acc), centroids.to(acc)
    partial = c.square().sum(-1)[:, None, :] - 2 * torch.bmm(xa, c.transpose(1, 2))
    labels = partial.argmin(-1)  # the first minimum: ties go to the lowest j
    best = partial.gather(-1, labels[..., None]).squeeze(-1)
    distances = (xa.square().sum(-1) + best).clamp_min(0)
    sums = torch.zeros_like(c).scatter_add_(1, labels[..., None].expand_as(xa), xa)
    counts = torch.zeros(c.shape[:2], dtype=torch.int64, device=x.device)
    counts.scatter_add_(1, labels, torch.ones_like(labels))
    return labels, distances, sums, counts
