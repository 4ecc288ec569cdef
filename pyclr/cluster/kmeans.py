"""K-Means on per-pixel features (SPEC.md section 3), on the fused ``kmeans_step`` kernels."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F

from .. import _ops
from .._checks import check_choice, check_int, check_nonnegative, check_size, describe, is_int, shown
from ..losses.priors import normalize_rows
from . import _external, _lloyd, reference

MODES = ("per_image", "cross_image")
INITS = ("k-means++", "random")
BACKENDS = ("auto", "pyclr", "torch", "sklearn", "faiss")


@dataclass
class ClusterResult:
    """What a clustering returns.

    For ``(B, H, W, C)`` features in per-image mode: ``labels`` ``(B, H, W)``, ``centroids``
    ``(B, k, C)``, ``inertia`` ``(B,)`` and ``n_iter`` ``(B,)``, one entry per image. In
    cross-image mode, and for ``(n, C)`` points: ``labels`` ``(B, H, W)`` or ``(n,)``, ``centroids``
    ``(k, C)``, and 0-d ``inertia`` and ``n_iter``. Labels are int64 in ``[0, k)``; centroids and
    inertia (the sum of squared distances of the points to their centroids) are float32, or
    float64 for float64 inputs (computed in float32 by the pyclr backend's CUDA kernel). ``n_iter`` counts Lloyd iterations (None where the algorithm has
    none, e.g. Ward).
    """

    labels: torch.Tensor
    centroids: torch.Tensor
    inertia: torch.Tensor
    n_iter: Optional[torch.Tensor] = None


def kmeans(x: torch.Tensor, k: int, mode: str = "per_image", n_init: int = 10, max_iter: int = 300,
           tol: float = 1e-4, init: str = "k-means++", backend: str = "auto",
           seed: int = 0) -> ClusterResult:
    r"""K-Means (Lloyd) of per-pixel features, one problem per image or one for the batch.

    Minimises the inertia :math:`\sum_i \min_j \|x_i - c_j\|^2` from ``n_init`` k-means++
    (greedy, as scikit-learn's) or random seedings and keeps, per problem, the run of lowest
    inertia. A run stops when its labels no longer change, when its centroids move by at most
    ``tol`` times the mean per-channel variance of its points (squared Frobenius norm, as
    scikit-learn's ``tol``), or after ``max_iter`` iterations. A cluster left empty is moved
    onto the point farthest from its centroid, so centroids are never NaN; constant features
    give one occupied cluster and zero inertia.

    Args:
        x: ``(B, H, W, C)`` features (e.g. :func:`pixel_features`) or ``(n, C)`` points; float32,
            bfloat16, float16 or float64. The features are clustered as given: normalise them
            first if the analysis calls for it (SPEC.md uses l2-normalised pixels). An image
            whose values are all below 2**-20 in magnitude is clustered as its copy scaled by
            a power of two (exact; the same partition), so that its squared distances do not
            underflow; centroids and inertia come back in the scale of x.
        k: clusters, ``1 <= k <=`` points per problem.
        mode: ``"per_image"`` (each image's ``H*W`` pixels are a separate problem, all solved
            together) or ``"cross_image"`` (the ``B*H*W`` pixels share one set of centroids).
            Irrelevant for ``(n, C)`` points.
        n_init, max_iter, tol, init: as scikit-learn's ``KMeans`` (``init`` "k-means++" or
            "random").
        backend: ``"pyclr"`` (the fused C++/CUDA kernels: one pass over the points per
            iteration, all images in one launch; on the CPU its per-slice partial sums take
            about k / 1024 times the memory of the points, so a k in the thousands needs
            several times x's size), ``"torch"`` (the same algorithm on the
            plain-PyTorch reference step), ``"sklearn"`` (``sklearn.cluster.KMeans`` per
            problem, on the CPU), ``"faiss"`` (``faiss.Kmeans`` from pyclr's seeding, with no
            subsampling and exactly ``max_iter`` iterations), or ``"auto"``: pyclr where a kernel
            was built for x's device, else scikit-learn on the CPU (the reference step when
            scikit-learn is missing) and the reference step on a GPU.
        seed: problem ``b`` uses the random stream seeded with ``seed + b`` (per-image mode),
            so a batch gives image ``b`` exactly what ``kmeans(x[b:b+1], ..., seed=seed + b)``
            gives it. On the pyclr and torch backends the same seed gives the same seeding on
            every device. (float16 features whose centred dot products could overflow
            float16, C (max - min)^2 > 6e4, are clustered in float32, decided for the whole
            batch: a batch that mixes such images with others clusters those others in
            float32 too.)
    """
    points, scale, per_problem = _problems(x, k, mode)
    _check_options(n_init, max_iter, tol, init, backend, seed)
    k, n_init, max_iter, tol, seed = int(k), int(n_init), int(max_iter), float(tol), int(seed)  # numpy scalars too
    solution = _solve(points, k, n_init, max_iter, tol, init, _resolve_backend(backend, x.device), seed)
    if scale is not None:
        solution.centroids, solution.inertia = unscaled(solution.centroids, solution.inertia, scale)
    return _result(solution, x, per_problem)


def pixel_features(feature_map: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` activations -> ``(B, H, W, C)`` per-pixel features, l2-normalised over
    the channels (SPEC.md section 3), in the input's dtype (the norm is taken in fp32)."""
    if not isinstance(feature_map, torch.Tensor) or feature_map.dim() != 4 or feature_map.shape[1] == 0:
        raise ValueError(f"feature_map: expected a (B, C, H, W) tensor with C >= 1, got "
                         f"{describe(feature_map)}")
    if not feature_map.is_floating_point():
        raise TypeError(f"feature_map: expected a floating-point tensor, got {feature_map.dtype}")
    return normalize_rows(feature_map, dim=1).permute(0, 2, 3, 1).contiguous()


def raw_pixel_kmeans(image: torch.Tensor, size: Union[int, Tuple[int, int]], k: int, seed: int = 0,
                     **options) -> ClusterResult:
    """The raw-pixel baseline of Chen et al. and the [Re] paper: K-Means on the RGB values of
    the image downsampled (area interpolation) to the feature map's ``size``.

    Args:
        image: ``(3, H, W)`` or ``(H, W, 3)`` (a ``(3, H, 3)`` image is read as channels
            first), uint8 (scaled to [0, 1]) or floating point.
        size: ``(h, w)`` or one int for a square map, at most the image's size.
        k, seed, options: as :func:`kmeans` (``options``: n_init, max_iter, tol, init, backend).

    Returns ``labels`` ``(h, w)``, ``centroids`` ``(k, 3)`` (colours in the scale of the input
    after uint8 -> [0, 1]), 0-d ``inertia`` and ``n_iter``.
    """
    if "mode" in options:  # one image's pixels are one problem either way
        raise ValueError("mode: raw_pixel_kmeans clusters one image; for the pixels of several, "
                         "kmeans(..., mode='cross_image') on their downsampled colours")
    small = _downsample(_channels_first(image), check_size("size", size))
    result = kmeans(small.permute(1, 2, 0)[None].contiguous(), k, seed=seed, **options)
    return ClusterResult(result.labels[0], result.centroids[0], result.inertia[0], result.n_iter[0])


# --- checks ----------------------------------------------------------------------------------

# seeds of image b are seed + b: scikit-learn's random_state takes them below 2**32
SEED_LIMIT = 2 ** 31


def _check_seed(seed) -> int:
    return check_int("seed", seed, 0, SEED_LIMIT - 1)


def _check_k(k, n: int) -> None:
    if not is_int(k) or not 1 <= k <= n:
        raise (ValueError if is_int(k) else TypeError)(
            f"k: expected an int with 1 <= k <= {n} (the points per problem), got {shown(k)}")


def _check_dtype(x: torch.Tensor) -> None:
    if x.dtype not in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        raise TypeError(f"x: expected dtype float32, bfloat16, float16 or float64, got {x.dtype}")


def _problems(x, k, mode) -> Tuple[torch.Tensor, Optional[torch.Tensor], bool]:
    """x as (problems, points, C), its scale (see :func:`_check_values`) and whether each image
    is its own problem."""
    if not isinstance(x, torch.Tensor) or x.dim() not in (2, 4):
        raise ValueError(f"x: expected a (B, H, W, C) or (n, C) tensor, got {describe(x)}")
    _check_dtype(x)
    if x.numel() == 0:
        raise ValueError(f"x: expected at least one point and one channel, got shape {tuple(x.shape)}")
    check_choice("mode", mode, MODES)
    per_problem = x.dim() == 4 and mode == "per_image"
    points = x.detach().reshape(x.shape[0] if per_problem else 1, -1, x.shape[-1])
    _check_k(k, points.shape[1])
    points, scale = _check_values(points)
    return points, scale, per_problem


# float16 dot products overflow past 65504: seeding computes them in x's dtype
_FP16_SAFE = 6e4
# a problem whose largest |value| is below this is scaled up by a power of two: squared
# distances of points around 1e-25 underflow float32 (every point then seemed equally close to
# every centroid: one cluster); the same points scaled by 2**k give the same partition exactly
_TINY = 2.0 ** -20


def _check_values(points: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Rejects NaN, infinities and values whose squared distances overflow float32 (every
    backend computes them in float32 somewhere: the CUDA kernel, faiss); float16 points whose
    dot products would overflow float16 are returned as float32. A problem whose values are
    all below ``_TINY`` in magnitude (and not all 0) is multiplied by the power of two that
    brings its largest to [0.5, 1): then ``scale``, ``(B,)`` powers of two (1 for the other
    problems), is returned too, else None. Scaling by a power of two is exact, so the
    clustering of the scaled points is that of the given ones: :func:`unscaled` maps the
    centroids and inertia back. Decided per problem: a problem gets the same in any batch."""
    # min and max propagate NaN: one pass over x and no (n, C) mask
    low, high = torch.aminmax(points.reshape(points.shape[0], -1), dim=1)
    work = torch.float64 if points.dtype == torch.float64 else torch.float32
    low, high = low.to(work), high.to(work)
    largest, spread = torch.maximum(-low, high), high - low  # per problem
    tiny = (largest > 0) & (largest < _TINY)
    low, high, widest_spread, any_tiny = torch.stack(
        (low.min(), high.max(), spread.max(), tiny.any().to(work))).tolist()
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("x: contains NaN or infinite values")
    n, channels = points.shape[1], points.shape[2]
    widest = max(-low, high)
    # a squared distance is at most C (2 max|x|)^2, the inertia n times that; then a factor 2 of
    # headroom in max|x| (4 in the sums) for rounding in the accumulations
    limit = math.sqrt(torch.finfo(torch.float32).max / (4 * channels * n)) / 2
    if widest > limit:
        raise ValueError(f"x: values up to {widest:.3g} overflow float32 squared distances for {n} points of "
                         f"{channels} channels (the limit is {limit:.3g}); rescale x, e.g. normalise it")
    scale = None
    if any_tiny:
        # 2**-e with largest = m 2**e, m in [0.5, 1); e bounded so that 2**-e is finite in work
        least = math.frexp(torch.finfo(work).tiny)[1]
        exponent = torch.frexp(largest).exponent.clamp_min(least)
        scale = torch.where(tiny, torch.ldexp(torch.ones_like(largest), -exponent), torch.ones_like(largest))
        points = (points.to(work) * scale[:, None, None]).to(points.dtype)
        widest_spread = float((spread * scale).max())
    # the points are centred before seeding: a coordinate then lies within the problem's
    # spread (max - min) of 0, and a dot product within C spread^2 (max|x| is not enough: points
    # at +-110 in 4 channels overflowed, and two far groups merged). Decided for the whole batch:
    # see kmeans' docstring (seed) on batch exactness
    if points.dtype == torch.float16 and channels * widest_spread ** 2 > _FP16_SAFE:
        points = points.float()
    return points, scale


def unscaled(centroids: torch.Tensor, inertia: torch.Tensor,
             scale: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Centroids ``(B, k, C)`` and inertia ``(B,)`` of points scaled by ``scale`` (see
    :func:`_check_values`), in the scale of the given points."""
    scale = scale.to(centroids.dtype)
    return centroids / scale[:, None, None], inertia / scale / scale  # scale**2 may overflow


def _check_options(n_init, max_iter, tol, init, backend, seed) -> None:
    check_int("n_init", n_init, 1)
    check_int("max_iter", max_iter, 1)
    check_nonnegative("tol", tol)
    check_choice("init", init, INITS)  # not an array of centroids: seeding is pyclr's own
    check_choice("backend", backend, BACKENDS)
    _check_seed(seed)


def _resolve_backend(backend: str, device: torch.device) -> str:
    if backend != "auto":
        return backend
    if _ops.has_kernel("kmeans_step", device.type):
        return "pyclr"
    if device.type == "cpu":
        try:
            _external.import_sklearn_cluster()
            return "sklearn"
        except ImportError:
            pass
    return "torch"


# --- solving ---------------------------------------------------------------------------------

def _kernel_step(x: torch.Tensor, centroids: torch.Tensor):
    return torch.ops.pyclr.kmeans_step(x, centroids)


def _solve(points, k, n_init, max_iter, tol, init, backend, seed) -> _lloyd.Solution:
    if backend == "sklearn":
        return _external.sklearn_solve(points, k, n_init, max_iter, tol, init, seed)
    if backend == "faiss":
        return _external.faiss_solve(points, k, n_init, max_iter, init, seed)
    step = reference.kmeans_step
    if backend == "pyclr":
        _ops.require_kernel("kmeans_step", points.device)
        step = _kernel_step
        if points.is_cuda and points.dtype == torch.float64:
            # the CUDA kernel takes 32- and 16-bit floats only: solved in float32, returned as
            # float64 like every other float64 result
            solution = _lloyd.solve(points.float().contiguous(), k, step, n_init, max_iter, tol, init, seed)
            return replace(solution, centroids=solution.centroids.double(),
                                       inertia=solution.inertia.double())
    return _lloyd.solve(points.contiguous(), k, step, n_init, max_iter, tol, init, seed)


def _result(solution: _lloyd.Solution, x: torch.Tensor, per_problem: bool) -> ClusterResult:
    labels = solution.labels.reshape(x.shape[:-1])
    if per_problem:
        return ClusterResult(labels, solution.centroids, solution.inertia, solution.n_iter)
    return ClusterResult(labels, solution.centroids[0], solution.inertia[0], solution.n_iter[0])


# --- raw pixels ------------------------------------------------------------------------------

def _channels_first(image) -> torch.Tensor:
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or 3 not in (image.shape[0], image.shape[-1]):
        raise ValueError(f"image: expected a (3, H, W) or (H, W, 3) tensor, got {describe(image)}")
    if image.dtype == torch.uint8:
        image = image.float() / 255
    elif not image.is_floating_point():
        raise TypeError(f"image: expected uint8 or floating point, got {image.dtype}")
    return image if image.shape[0] == 3 else image.permute(2, 0, 1)


def _downsample(image: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    if size[0] > image.shape[1] or size[1] > image.shape[2]:
        raise ValueError(f"size: expected at most the image's (H, W) = {tuple(image.shape[1:])}, got {size}")
    work = image if image.dtype == torch.float64 else image.float()
    return F.interpolate(work[None], size=size, mode="area")[0]


# --- operator registration: the fake kernel (for torch.compile / opcheck) ---------------------

def _step_fake(x, centroids):
    batch, n, c = x.shape
    k = centroids.shape[1]
    return (x.new_empty((batch, n), dtype=torch.int64), x.new_empty((batch, n), dtype=centroids.dtype),
            x.new_empty((batch, k, c), dtype=centroids.dtype), x.new_empty((batch, k), dtype=torch.int64))


def _step_setup_context(ctx, inputs, output):
    # a Lloyd step has no gradient: its outputs are constants for autograd (without this link,
    # points that require grad gave outputs that did too, and torch's "silently incorrect" warning)
    ctx.mark_non_differentiable(*output)


def _step_backward(ctx, *grads):
    raise RuntimeError("pyclr::kmeans_step: not differentiable")  # unreachable: no output needs grad


if _ops.EXTENSION_LOADED and hasattr(torch.ops.pyclr, "kmeans_step"):
    torch.library.register_fake("pyclr::kmeans_step")(_step_fake)
    torch.library.register_autograd("pyclr::kmeans_step", _step_backward, setup_context=_step_setup_context)
