"""Contrastive losses. Each has a fused form here and a plain-PyTorch one in ``reference``."""
from . import reference
from .generalized import (DISTRIBUTIONS, PRIORS, GeneralizedContrastiveLoss, GeneralizedLossParts,
                          alignment, generalized_contrastive, logsumexp_uniformity,
                          random_projections, sample_prior, sliced_wasserstein)
from .ntxent import NTXentLoss, nt_xent

__all__ = [
    "NTXentLoss", "nt_xent",
    "GeneralizedContrastiveLoss", "GeneralizedLossParts", "generalized_contrastive", "alignment",
    "logsumexp_uniformity", "sliced_wasserstein", "sample_prior", "random_projections",
    "PRIORS", "DISTRIBUTIONS", "reference",
]
