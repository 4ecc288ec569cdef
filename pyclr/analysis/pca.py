"""PCA of a layer's activations (Hermann et al., Fig. 4 and B.5)."""
from __future__ import annotations

from typing import NamedTuple

import torch

from .._checks import check_int
from ._checks import check_activations


class PCAEmbedding(NamedTuple):
    coords: torch.Tensor                    # (n, k) the centred rows projected on the components
    components: torch.Tensor                # (k, d) unit principal axes, by decreasing variance
    explained_variance_ratio: torch.Tensor  # (k,) each component's share of the total variance
    mean: torch.Tensor                      # (d,) the mean that was subtracted


@torch.no_grad()
def pca_embedding(features: torch.Tensor, n_components: int = 2) -> PCAEmbedding:
    """Projects ``features`` (n, d) on its first ``n_components`` principal components.

    Computed in float64 by an SVD of the centred data. Each component's sign is fixed so its
    largest-magnitude loading is positive, so the same data always gives the same picture.
    Data with no variance (all rows equal) gives zero coordinates and ratios of 0.
    """
    x = check_activations("features", features, 2, "(n, d)")
    n, d = x.shape
    k = check_int("n_components", n_components, 1, min(n, d))
    x64 = x.double()
    # rows all equal: their float64 mean may miss them by an ulp, and that rounding error
    # became a component "explaining" 100% of a constant layer's variance
    mean = x64[0].clone() if bool((x == x[0]).all()) else x64.mean(0)
    centred = x64 - mean
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    components = vh[:k]
    pivot = components.abs().argmax(1, keepdim=True)
    sign = components.gather(1, pivot).sign()
    components = components * torch.where(sign == 0, torch.ones_like(sign), sign)
    # shares of s^2 taken after dividing by the largest s: 1e200 data overflowed float64 (NaN
    # ratios) and 1e-200 data underflowed to ratios of 0
    variance = (s / s[0]).square() if s.numel() and s[0] > 0 else s.square()
    total = variance.sum()
    ratio = variance[:k] / total if total > 0 else torch.zeros(k, dtype=torch.float64, device=x.device)
    return PCAEmbedding((centred @ components.T).to(x.dtype), components.to(x.dtype),
                        ratio.to(x.dtype), mean.to(x.dtype))
