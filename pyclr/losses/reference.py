"""Plain-PyTorch references: the specification in code (SPEC.md).

Each function has the signature of its fused counterpart in ``pyclr.losses``, computes in the
dtype it is given (float64 for ground truth) and builds the full similarity matrix, so it is
simple to read and O(M^2) in memory. Tests compare every kernel with these.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_bool, check_choice, check_positive, check_views
from ._gather import gather_views

NORM_EPS = 1e-12  # z / max(||z||, eps), as torch.nn.functional.normalize
NEGATIVES = ("all", "cross")
REDUCTIONS = ("mean", "sum", "none")


def check_nt_xent_options(temperature, normalize, negatives, reduction,
                          gather_distributed) -> float:
    """Checks the options of NT-Xent; returns the temperature as a float."""
    temperature = check_positive("temperature", temperature)
    check_bool("normalize", normalize)
    check_choice("negatives", negatives, NEGATIVES)
    check_choice("reduction", reduction, REDUCTIONS)
    check_bool("gather_distributed", gather_distributed)
    return temperature


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5, normalize: bool = True,
            negatives: str = "all", reduction: str = "mean",
            gather_distributed: bool = False) -> torch.Tensor:
    """NT-Xent (SPEC.md section 1) with the full (2N, M) logit matrix and cross-entropy."""
    check_views(z1, z2, kernel=False)
    temperature = check_nt_xent_options(temperature, normalize, negatives, reduction,
                                        gather_distributed)
    n = z1.shape[0]
    if normalize:
        z1, z2 = F.normalize(z1, dim=1, eps=NORM_EPS), F.normalize(z2, dim=1, eps=NORM_EPS)
    all1, all2, offset = gather_views(z1, z2) if gather_distributed else (z1, z2, 0)
    n_all = all1.shape[0]
    local = torch.arange(n, device=z1.device) + offset  # this rank's rows in the gathered views
    if negatives == "all":
        logits = torch.cat([z1, z2]) @ torch.cat([all1, all2]).T / temperature
        rows = torch.arange(2 * n, device=z1.device)
        logits[rows, torch.cat([local, local + n_all])] = float("-inf")  # self, by index
        labels = torch.cat([local + n_all, local])
    else:  # the other view only, the positive included
        logits = torch.cat([z1 @ all2.T, z2 @ all1.T]) / temperature
        labels = torch.cat([local, local])
    return F.cross_entropy(logits, labels, reduction=reduction)
