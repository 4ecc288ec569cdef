r"""The generalized contrastive loss of Chen, Luo & Li (2021), Table 1, on fused kernels.

.. math:: L = L_{align} + \lambda L_{dist}

with the alignment of the two views and a term that pulls the batch towards a prior: the
uniform hypersphere through a log-sum-exp (NT-Xent's denominator with the self term kept) or
the hypersphere, Gaussian or hypercube through the squared sliced 2-Wasserstein distance.
Definitions: SPEC.md section 2; plain-PyTorch forms in :mod:`pyclr.losses.reference`.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import _ops
from .._checks import check_generator
from ._checks import check_kernel_dtype, check_temperature
from .ntxent import nt_xent_rows
from .reference import (DISTRIBUTIONS, GeneralizedLossParts, alignment, check_generalized_options,
                        check_matrix, compose_generalized)
from .priors import PRIORS, random_projections, sample_prior
from .swd import sliced_wasserstein

_SELF = 2  # csrc/ntxent/ntxent.h: kSelf, every column including the row's own, no positive


def logsumexp_uniformity(z: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    r"""The uniformity term :math:`\frac{1}{M} \sum_i \log \sum_{k=1}^{M} \exp(z_i \cdot z_k / \tau)`
    (self included) on ``z`` as given, ``(M, d)`` with ``M`` even (the two views stacked).

    Runs on the NT-Xent kernels without building the M x M matrix; returns float32 (float64
    for float64 inputs on the CPU). The generalized loss passes l2-normalised rows. float32 on
    CUDA follows torch's float32 matmul precision as :func:`pyclr.losses.nt_xent` does.
    """
    check_matrix("z", z)
    check_kernel_dtype("z", z)
    if z.shape[0] % 2:
        raise ValueError(
            f"z: the fused kernel takes the two views stacked, an even number of rows; got "
            f"{z.shape[0]} (pyclr.losses.reference.logsumexp_uniformity takes any number)"
        )
    temperature = check_temperature(temperature)
    _ops.require_kernel("nt_xent_forward", z.device)
    return nt_xent_rows(z, temperature, _SELF, 0, z.shape[0] // 2).mean()


def generalized_contrastive(z1: torch.Tensor, z2: torch.Tensor, prior: str = "hypersphere",
                            distribution: str = "swd", lam: float = 1.0,
                            temperature: float = 1.0, num_projections: int | None = None,
                            generator: torch.Generator | None = None,
                            projections: torch.Tensor | None = None,
                            prior_samples: torch.Tensor | None = None,
                            return_parts: bool = False):
    r"""The generalized contrastive loss :math:`L_{align} + \lambda L_{dist}` (SPEC.md section 2).

    Args:
        z1, z2: the two views' embeddings, ``(N, d)``, float32, bfloat16 or float16 (float64 on
            the CPU).
        prior: ``"hypersphere"`` (rows l2-normalised first), ``"gaussian"`` or ``"hypercube"``
            (rows used as they are).
        distribution: ``"swd"`` (squared sliced 2-Wasserstein distance to samples of the
            prior) or ``"logsumexp"`` (uniformity on the hypersphere; hypersphere prior only).
        lam: the weight :math:`\lambda \ge 0` of the distribution term.
        temperature: :math:`\tau` of the ``"logsumexp"`` term, in [1e-3, 1e6].
        num_projections: the number ``L <= d`` of projection directions (default ``d``).
        generator: the source of the projections and prior samples, drawn fresh each call
            (seed it for a reproducible call).
        projections: ``(d, L)`` with orthonormal columns, instead of drawing them.
        prior_samples: ``(2N, d)`` samples of the prior, instead of drawing them.
        return_parts: return :class:`GeneralizedLossParts` ``(alignment, distribution,
            total)`` instead of the total alone, for logging.
    """
    return compose_generalized(z1, z2, prior, distribution, lam, temperature, num_projections,
                               generator, projections, prior_samples, return_parts,
                               kernel=True, uniformity=logsumexp_uniformity,
                               swd=sliced_wasserstein)


class GeneralizedContrastiveLoss(nn.Module):
    """Module form of :func:`generalized_contrastive`; options are checked here, once.

    ``forward(z1, z2, projections=None, prior_samples=None)`` draws from ``generator`` (given
    here, or per call) when projections or prior samples are not given.
    """

    def __init__(self, prior: str = "hypersphere", distribution: str = "swd", lam: float = 1.0,
                 temperature: float = 1.0, num_projections: int | None = None,
                 generator: torch.Generator | None = None, return_parts: bool = False):
        super().__init__()
        self.lam, self.temperature = check_generalized_options(
            prior, distribution, lam, temperature, num_projections, return_parts)
        self.prior = prior
        self.distribution = distribution
        self.num_projections = None if num_projections is None else int(num_projections)  # checked
        check_generator(generator)
        self.generator = generator
        self.return_parts = bool(return_parts)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor,
                projections: torch.Tensor | None = None,
                prior_samples: torch.Tensor | None = None,
                generator: torch.Generator | None = None):
        return generalized_contrastive(
            z1, z2, self.prior, self.distribution, self.lam, self.temperature,
            self.num_projections, generator if generator is not None else self.generator,
            projections, prior_samples, self.return_parts)

    def extra_repr(self) -> str:
        return (f"prior={self.prior!r}, distribution={self.distribution!r}, lam={self.lam}, "
                f"temperature={self.temperature}, num_projections={self.num_projections}")


__all__ = ["generalized_contrastive", "GeneralizedContrastiveLoss", "GeneralizedLossParts",
           "alignment", "logsumexp_uniformity", "sliced_wasserstein", "sample_prior",
           "random_projections", "PRIORS", "DISTRIBUTIONS"]
