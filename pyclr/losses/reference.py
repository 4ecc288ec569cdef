"""Plain-PyTorch references: the specification in code (SPEC.md).

Each function has the signature of its fused counterpart in ``pyclr.losses``, computes in the
dtype it is given (float64 for ground truth) and builds the full similarity matrix, so it is
simple to read and O(M^2) in memory. Tests compare every kernel with these.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from typing import Callable, NamedTuple

from .._checks import check_bool, check_choice, check_generator, check_int, check_nonnegative
from ._checks import check_dense, check_temperature, check_views
from ._gather import gather_views
from .priors import (PRIORS, check_orthonormal_columns, check_projections, normalize_rows,
                     random_projections, sample_prior)

NEGATIVES = ("all", "cross")
REDUCTIONS = ("mean", "sum", "none")


def check_nt_xent_options(temperature, normalize, negatives, reduction,
                          gather_distributed) -> float:
    """Checks the options of NT-Xent; returns the temperature as a float."""
    temperature = check_temperature(temperature)
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
        z1, z2 = normalize_rows(z1), normalize_rows(z2)
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


# --- Generalized contrastive loss (SPEC.md section 2) ------------------------------------------

DISTRIBUTIONS = ("swd", "logsumexp")


class GeneralizedLossParts(NamedTuple):
    """The terms of ``alignment + lam * distribution = total``, each a scalar tensor."""

    alignment: torch.Tensor
    distribution: torch.Tensor
    total: torch.Tensor


def check_generalized_options(prior, distribution, lam, temperature, num_projections,
                              return_parts) -> tuple[float, float]:
    """Checks the options of the generalized loss; returns (lam, temperature) as floats."""
    check_choice("prior", prior, PRIORS)
    check_choice("distribution", distribution, DISTRIBUTIONS)
    if distribution == "logsumexp" and prior != "hypersphere":
        raise ValueError(
            f"distribution='logsumexp' matches the uniform hypersphere only; with prior={prior!r} "
            "use distribution='swd'"
        )
    lam = check_nonnegative("lam", lam)
    temperature = check_temperature(temperature)
    if num_projections is not None:
        check_int("num_projections", num_projections, 1)
    check_bool("return_parts", return_parts)
    return lam, temperature


def check_matrix(name: str, x, rows: int | None = None, cols: int | None = None) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    check_dense(name, x)
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty 2-D tensor (rows, dim), got shape {tuple(x.shape)}")
    if (rows is not None and x.shape[0] != rows) or (cols is not None and x.shape[1] != cols):
        want = f"({rows if rows is not None else 'rows'}, {cols if cols is not None else 'dim'})"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {x.dtype}")


def check_swd_inputs(h, prior_samples, projections, check_orthonormal: bool = True) -> None:
    check_bool("check_orthonormal", check_orthonormal)
    check_matrix("h", h)
    check_matrix("prior_samples", prior_samples, *h.shape)
    check_projections(projections, h.shape[1])
    for name, t in (("prior_samples", prior_samples), ("projections", projections)):
        if t.device != h.device:
            raise ValueError(f"{name}: expected device {h.device} (that of h), got {t.device}")
    if check_orthonormal:  # after the device check: it reads a value back from the projections' device
        check_orthonormal_columns(projections)
    if projections.requires_grad:
        raise ValueError("projections: expected a tensor that does not require grad (the loss "
                         "gives no gradient for the projection directions)")


def alignment(z1: torch.Tensor, z2: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """``(1 / (2 N d)) sum_i ||h1_i - h2_i||^2`` with ``h = z / ||z||`` when ``normalize``.

    O(N d): no kernel is needed, so this one function serves the fused loss too."""
    check_views(z1, z2, kernel=False)
    if check_bool("normalize", normalize):
        z1, z2 = normalize_rows(z1), normalize_rows(z2)
    work = torch.float64 if z1.dtype == torch.float64 else torch.float32  # a float16 sum overflows at 65504
    return (z1.to(work) - z2.to(work)).pow(2).sum() / (2 * z1.numel())


def logsumexp_uniformity(z: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``(1/M) sum_i log sum_{k=1..M} exp(z_i . z_k / tau)``, self included, on ``z`` as given
    (the generalized loss passes normalised rows)."""
    check_matrix("z", z)
    temperature = check_temperature(temperature)
    return torch.logsumexp(z @ z.T / temperature, dim=1).mean()


def sliced_wasserstein(h: torch.Tensor, prior_samples: torch.Tensor,
                       projections: torch.Tensor, check_orthonormal: bool = True) -> torch.Tensor:
    """The squared sliced 2-Wasserstein distance between the rows of ``h`` and of
    ``prior_samples`` (both ``(M, d)``) along the columns of ``projections`` (``(d, L)``):
    ``(1 / (M L)) sum_l sum_r (sort(h W)_rl - sort(P W)_rl)^2``. ``check_orthonormal=False``
    skips the check of W's columns (it reads a value back from the device)."""
    check_swd_inputs(h, prior_samples, projections, check_orthonormal)
    x = torch.sort(h @ projections.to(h.dtype), dim=0).values
    y = torch.sort(prior_samples.to(h.dtype) @ projections.to(h.dtype), dim=0).values
    return (x - y).pow(2).mean()


def generalized_contrastive(z1: torch.Tensor, z2: torch.Tensor, prior: str = "hypersphere",
                            distribution: str = "swd", lam: float = 1.0,
                            temperature: float = 1.0, num_projections: int | None = None,
                            generator: torch.Generator | None = None,
                            projections: torch.Tensor | None = None,
                            prior_samples: torch.Tensor | None = None,
                            return_parts: bool = False):
    """The generalized contrastive loss (SPEC.md section 2) built from the references above."""
    return compose_generalized(z1, z2, prior, distribution, lam, temperature, num_projections,
                               generator, projections, prior_samples, return_parts,
                               kernel=False, uniformity=logsumexp_uniformity,
                               swd=sliced_wasserstein)


def compose_generalized(z1, z2, prior, distribution, lam, temperature, num_projections,
                        generator, projections, prior_samples, return_parts, *, kernel: bool,
                        uniformity: Callable, swd: Callable):
    """``alignment + lam * distribution`` with the given distribution terms: the one
    composition that the fused loss (pyclr.losses.generalized) and the reference share."""
    check_views(z1, z2, kernel=kernel)
    lam, temperature = check_generalized_options(prior, distribution, lam, temperature,
                                                 num_projections, return_parts)
    check_generator(generator)
    normalize = prior == "hypersphere"
    h1, h2 = (normalize_rows(z1), normalize_rows(z2)) if normalize else (z1, z2)
    align = alignment(h1, h2, normalize=False)
    h = torch.cat([h1, h2])
    if distribution == "logsumexp":
        dist = uniformity(h, temperature)
    else:
        m, d = h.shape
        drawn = projections is None  # drawn orthonormal: no need to check (a device sync)
        if drawn:
            projections = random_projections(d, num_projections, generator, device=h.device)
        elif num_projections is not None and projections.shape[-1] != num_projections:
            raise ValueError(f"num_projections: {num_projections} disagrees with the given "
                             f"projections of shape {tuple(projections.shape)}")
        if prior_samples is None:
            prior_samples = sample_prior(prior, m, d, generator, device=h.device)
        dist = swd(h, prior_samples, projections, check_orthonormal=not drawn)
    total = align + lam * dist
    return GeneralizedLossParts(align, dist, total) if return_parts else total
