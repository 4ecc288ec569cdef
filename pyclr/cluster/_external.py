"""The scikit-learn and faiss K-Means backends, one library call per problem.

Both libraries are optional and imported only when asked for. Results come back as a
:class:`~pyclr.cluster._lloyd.Solution` on the input's device, like the PyTorch backends'.
"""
from __future__ import annotations

from typing import List

import numpy as np
import torch

from ._lloyd import Solution, centred, initial_centroids, problem_generators
from .reference import acc_dtype


def import_sklearn_cluster():
    try:
        import sklearn.cluster
    except ImportError as exc:
        raise ImportError("this clustering backend needs scikit-learn: pip install scikit-learn") from exc
    return sklearn.cluster


def import_faiss():
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(
            "backend='faiss' needs faiss: pip install faiss-cpu (or faiss-gpu for CUDA tensors)"
        ) from exc
    return faiss


def to_numpy(points: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    return np.ascontiguousarray(points.detach().to("cpu", dtype).numpy())


def stack_solutions(labels: List[np.ndarray], centroids: List[np.ndarray], inertia: List[float],
                    n_iter: List[int], x: torch.Tensor) -> Solution:
    acc = acc_dtype(x)
    return Solution(
        centroids=torch.as_tensor(np.stack(centroids)).to(x.device, acc),
        labels=torch.as_tensor(np.stack(labels)).to(x.device, torch.int64),
        inertia=torch.tensor(inertia, dtype=acc, device=x.device),
        n_iter=torch.tensor(n_iter, dtype=torch.int64, device=x.device),
    )


def sklearn_solve(x: torch.Tensor, k: int, n_init: int, max_iter: int, tol: float, init: str,
                  seed: int) -> Solution:
    """scikit-learn's KMeans (Lloyd, same n_init / max_iter / tol / init), problem b seeded
    with ``seed + b``. 16-bit inputs run in float32, float64 stays float64."""
    KMeans = import_sklearn_cluster().KMeans
    labels, centroids, inertia, n_iter = [], [], [], []
    for b in range(x.shape[0]):
        fit = KMeans(n_clusters=k, init=init, n_init=n_init, max_iter=max_iter, tol=tol,
                     random_state=seed + b).fit(to_numpy(x[b], acc_dtype(x)))
        labels.append(fit.labels_)
        centroids.append(fit.cluster_centers_)
        inertia.append(float(fit.inertia_))
        n_iter.append(int(fit.n_iter_))
    return stack_solutions(labels, centroids, inertia, n_iter, x)


def faiss_solve(x: torch.Tensor, k: int, n_init: int, max_iter: int, init: str,
                seed: int) -> Solution:
    """faiss's K-Means from pyclr's seeding (the same k-means++ or random draws as the PyTorch
    backends), on the GPU when x is a CUDA tensor and faiss was built with GPU support.

    faiss trains on a random subsample of 256 points per centroid by default; here
    max_points_per_centroid is raised above n / k so that every point is used. faiss has no
    tolerance: it runs exactly ``max_iter`` iterations. Points are float32 (faiss's only type),
    centred per problem as for the PyTorch backends (whose seeds it then shares; float16
    seeding of points far from the origin overflowed), the centroids moved back.
    """
    faiss = import_faiss()
    batch, n, c = x.shape
    gpu = x.is_cuda and faiss.get_num_gpus() > 0
    generators = problem_generators(seed, batch)
    x, mean = centred(x)
    points = [to_numpy(x[b], torch.float32) for b in range(batch)]
    best: List[tuple] = [(np.inf, None, None)] * batch
    for _ in range(n_init):
        seeds = initial_centroids(x, k, init, generators)
        for b in range(batch):
            # faiss's seed is a signed 32-bit int: seed + b may pass it (kmeans takes seeds < 2**31)
            km = faiss.Kmeans(c, k, niter=max_iter, nredo=1, seed=(seed + b) % 2**31, gpu=gpu, verbose=False,
                              max_points_per_centroid=n // k + 1, min_points_per_centroid=1)
            km.train(points[b], init_centroids=to_numpy(seeds[b], torch.float32))
            distances, labels = km.index.search(points[b], 1)
            inertia = float(distances.astype(np.float64).sum())
            if inertia < best[b][0]:
                best[b] = (inertia, labels[:, 0], km.centroids.copy())
    solution = stack_solutions([lab for _, lab, _ in best], [cen for _, _, cen in best],
                               [ine for ine, _, _ in best], [max_iter] * batch, x)
    solution.centroids = solution.centroids + mean.to(solution.centroids.dtype)
    return solution
