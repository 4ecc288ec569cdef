"""Samples of the generalized contrastive loss's priors and random projection directions.

Both draw from a ``torch.Generator`` when one is given, on the generator's device, and move
the result to ``device``: the same seed gives the same numbers whatever device the loss runs
on (SPEC.md section 2).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._checks import check_device, check_generator, check_int

PRIORS = ("hypersphere", "gaussian", "hypercube")
NORM_EPS = 1e-12  # z / max(||z||, eps), as torch.nn.functional.normalize


def normalize_rows(z: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """``z / max(||z||, eps)`` along ``dim``, the norm taken in float32 (float64 kept) and the
    result rounded once to ``z``'s dtype: in float16 ``eps`` itself rounds to 0, so a zero row
    would become NaN. Every loss (fused and reference) and :func:`pyclr.cluster.pixel_features`
    normalise through this one function.

    A row whose norm overflows (float32 values past ~1e19, bfloat16's range) is first divided
    by its largest |value| (exact: the result does not depend on the row's scale; the scale is
    a constant for autograd), so it keeps its direction instead of becoming zeros like
    ``F.normalize``'s; every other row is divided by 1 and gives ``F.normalize``'s bits."""
    work = z if z.dtype in (torch.float32, torch.float64) else z.float()
    with torch.no_grad():
        norm = torch.linalg.vector_norm(work, dim=dim, keepdim=True)
        largest = torch.linalg.vector_norm(work, ord=math.inf, dim=dim, keepdim=True)
        scale = torch.where(torch.isinf(norm) & torch.isfinite(largest), largest, 1.0)
    x = work / scale
    unit = x / torch.linalg.vector_norm(x, dim=dim, keepdim=True).clamp_min(NORM_EPS / scale)
    return unit.to(z.dtype)


def _draw(kind: str, shape, generator, device, dtype) -> torch.Tensor:
    check_generator(generator)
    device = None if device is None else check_device(device)
    where = generator.device if generator is not None else device
    draw = torch.randn if kind == "normal" else torch.rand
    x = draw(shape, generator=generator, device=where, dtype=torch.float32)
    return x.to(device=device, dtype=dtype)


def sample_prior(name: str, m: int, d: int, generator: torch.Generator | None = None, *,
                 device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``m`` samples in ``d`` dimensions of a prior of Chen et al.'s Table 1, shape ``(m, d)``.

    - ``"hypersphere"``: uniform on the unit sphere, ``normalize(N(0, I))``;
    - ``"gaussian"``: ``N(0, I)``;
    - ``"hypercube"``: uniform on ``[-1, 1]^d``.
    """
    if name not in PRIORS:
        raise ValueError(f"prior: expected one of {', '.join(map(repr, PRIORS))}, got {name!r}")
    m, d = check_int("m", m, 1), check_int("d", d, 1)
    check_float_dtype(dtype)
    if name == "hypercube":
        return _draw("uniform", (m, d), generator, device, torch.float32).mul_(2).sub_(1).to(dtype)
    x = _draw("normal", (m, d), generator, device, torch.float32)
    if name == "hypersphere":
        x = F.normalize(x, dim=1, eps=NORM_EPS)
    return x.to(dtype)


def random_projections(d: int, num_projections: int | None = None,
                       generator: torch.Generator | None = None, *, device=None,
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A ``(d, L)`` matrix with orthonormal columns, uniformly (Haar) distributed; ``L = d`` by
    default, a random orthogonal matrix. The QR factor of a Gaussian matrix, with the signs of
    R's diagonal moved into Q so that the distribution is exactly uniform."""
    d = check_int("d", d, 1)
    check_float_dtype(dtype)
    num = d if num_projections is None else check_int("num_projections", num_projections, 1)
    if num > d:
        raise ValueError(f"num_projections: expected at most d = {d} (orthonormal columns), got {num}")
    device = None if device is None else check_device(device)
    g = _draw("normal", (d, num), generator, "cpu" if generator is None else None, torch.float64)
    q, r = torch.linalg.qr(g)
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1
    return (q * signs).to(device=device, dtype=dtype)


def check_float_dtype(dtype) -> None:
    """Samples and projections are real numbers: an integer or bool dtype would round them away."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype: expected a floating-point torch.dtype, got {dtype!r}")


def check_projections(projections: torch.Tensor, d: int) -> None:
    """A floating-point ``(d, L)`` tensor with ``L <= d`` (its values: check_orthonormal_columns)."""
    if not isinstance(projections, torch.Tensor):
        raise TypeError(f"projections: expected a torch.Tensor, got {type(projections).__name__}")
    if projections.dim() != 2 or projections.shape[0] != d or not 1 <= projections.shape[1] <= d:
        raise ValueError(
            f"projections: expected shape (d, L) with d = {d} and 1 <= L <= d, got {tuple(projections.shape)}"
        )
    if not projections.is_floating_point():
        raise TypeError(f"projections: expected a floating-point tensor, got {projections.dtype}")


def check_orthonormal_columns(projections: torch.Tensor) -> None:
    """Orthonormal columns: ``|W^T W - I| <= 1e-3`` (``1e-2`` for 16-bit dtypes, whose rounding
    alone leaves about ``2^-8``). It reads a value back from the device: callers that drew W
    skip it."""
    tol = 1e-2 if projections.element_size() == 2 else 1e-3
    w = projections.detach().double()
    error = (w.T @ w - torch.eye(w.shape[1], dtype=w.dtype, device=w.device)).abs().max().item()
    if not error <= tol:  # also catches NaN
        raise ValueError(f"projections: expected orthonormal columns (|W^T W - I| <= {tol}), got an error of {error:.3g}")
