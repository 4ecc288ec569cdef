"""K-Means: 20 Lloyd iterations of the fused kmeans_step against an eager PyTorch loop
(cdist / argmin / index_add), scikit-learn and faiss, same points, same starting centroids,
same run.

    pytest benchmarks/bench_kmeans.py --benchmark-json=out.json     (GPU cases run when there is one)

Each case records ``bytes`` (one read of the features per iteration: the floor of a fused
iteration) and ``flops`` (the 2 B n k C multiply-adds of the distances per iteration), and
the peak memory of one run beyond the inputs. scikit-learn stops early when the labels stop
changing; ``iterations`` records how many it ran (it splits the case when it is not 20), and
so does ``library``, the loop that ``pyclr.cluster.kmeans`` runs around the same kernel.
scikit-learn and faiss always run on the CPU: on GPU cases their rows say device "cpu".
"""
import os

import numpy as np
import pytest
import torch

from memory import cpu_peak_mib, record_peak  # benchmarks/ is on sys.path (pytest prepends it)
import pyclr.cluster  # noqa: F401  (registers the fake kernel)
from pyclr import _ops
from pyclr.cluster import _lloyd

ITERATIONS = 20
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
GPU = torch.cuda.is_available() and _ops.has_kernel("kmeans_step", "cuda")

# (device, mode, problems B, points per problem n, channels C, k, dtype)
CASES = [
    ("cpu", "per_image", 4, 56 * 56, 256, 8, "fp32"),
    ("cpu", "cross_image", 1, 14 * 14 * 16, 2048, 8, "fp32"),
]
if GPU:
    CASES += [
        # ResNet-50 block 4 of 256 images (issue 6: eager 35 ms, target <= 5 ms), both dtypes
        ("cuda", "cross_image", 1, 256 * 14 * 14, 2048, 8, "fp32"),
        ("cuda", "cross_image", 1, 256 * 14 * 14, 2048, 8, "bf16"),
        ("cuda", "per_image", 64, 56 * 56, 256, 8, "fp32"),
        ("cuda", "per_image", 64, 56 * 56, 256, 8, "bf16"),
    ]


def inputs(device, b, n, c, k, dtype):
    """Features and starting centroids (k distinct points of each problem)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(b, n, c, generator=gen)
    x = torch.nn.functional.normalize(x, dim=-1)  # per-pixel features are l2-normalised
    start = torch.stack([torch.randperm(n, generator=gen)[:k] for _ in range(b)])
    centroids = x.gather(1, start[..., None].expand(-1, -1, c)).clone()
    return x.to(device, DTYPES[dtype]), centroids.to(device)


def lloyd(step, x, centroids):
    for _ in range(ITERATIONS):
        _, _, sums, counts = step(x, centroids)
        means = sums / counts.clamp_min(1)[..., None].to(sums.dtype)
        centroids = torch.where(counts[..., None] > 0, means, centroids)
    return centroids


def eager_step(x, centroids):
    """What one writes in plain PyTorch: the (B, n, k) distances, argmin, index_add."""
    b, n, c = x.shape
    k = centroids.shape[1]
    distances = torch.cdist(x, centroids).square()
    labels = distances.argmin(-1)
    flat = (labels + k * torch.arange(b, device=x.device)[:, None]).flatten()
    sums = torch.zeros(b * k, c, device=x.device).index_add_(0, flat, x.reshape(-1, c))
    counts = torch.bincount(flat, minlength=b * k)
    return labels, distances, sums.view(b, k, c), counts.view(b, k)


def run_fused(x, centroids):
    return lloyd(torch.ops.pyclr.kmeans_step, x, centroids)


def run_fused_two_pass(x, centroids):
    """The two-pass CUDA kernel (each tile of x read twice), which the one-pass kernel replaces
    where it fits: the measured gain of reading x once."""
    os.environ["PYCLR_KMEANS_TWO_PASS"] = "1"
    try:
        return lloyd(torch.ops.pyclr.kmeans_step, x, centroids)
    finally:
        del os.environ["PYCLR_KMEANS_TWO_PASS"]


def run_library(x, centroids):
    """The loop that pyclr.cluster.kmeans runs (_lloyd.lloyd: convergence checks, reseeding of
    empty clusters, one host sync per iteration, a final assignment step) from the same start:
    what the minimal loop of run_fused leaves out, small ops that can cost as much as the
    kernel on a GPU. Movement never counts as converged (tol < 0), but the run stops when the
    labels stop changing: it returns the iterations it ran (its steps are one more)."""
    tol = torch.full((x.shape[0],), -1.0, device=x.device)
    solution = _lloyd.lloyd(x, centroids, torch.ops.pyclr.kmeans_step, ITERATIONS, tol)
    return int(solution.n_iter.max())


def run_reference(x, centroids):
    return lloyd(eager_step, x.float(), centroids)  # in fp32, as one would write it


def run_sklearn(x, centroids):
    from sklearn.cluster import KMeans

    iterations = 0
    for xb, cb in zip(x.float().numpy(), centroids.numpy()):
        fit = KMeans(n_clusters=len(cb), init=cb, n_init=1, max_iter=ITERATIONS, tol=0.0).fit(xb)
        iterations = max(iterations, int(fit.n_iter_))
    return iterations


def run_faiss(x, centroids):
    import faiss

    for xb, cb in zip(x.float().numpy(), centroids.numpy()):
        n, (k, c) = len(xb), cb.shape
        km = faiss.Kmeans(c, k, niter=ITERATIONS, nredo=1, verbose=False,
                          max_points_per_centroid=n // k + 1, min_points_per_centroid=1)
        km.train(np.ascontiguousarray(xb), init_centroids=np.ascontiguousarray(cb))
    return ITERATIONS


IMPLS = {"fused": run_fused, "fused_two_pass": run_fused_two_pass, "library": run_library,
         "reference": run_reference, "sklearn": run_sklearn, "faiss": run_faiss}
KERNEL_IMPLS = ("fused", "fused_two_pass", "library")  # those that call pyclr's kmeans_step


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("case", CASES, ids=lambda case: "-".join(map(str, case)))
def test_lloyd_20_iterations(benchmark, impl, case):
    device, mode, b, n, c, k, dtype = case
    if impl in KERNEL_IMPLS and not _ops.has_kernel("kmeans_step", device):
        pytest.skip("pyclr's kmeans_step was not built for " + device)
    if impl == "fused_two_pass" and device != "cuda":
        pytest.skip("the CPU kernel has one pass only")
    if impl in ("sklearn", "faiss"):
        pytest.importorskip({"sklearn": "sklearn", "faiss": "faiss"}[impl])
        if dtype != "fp32":
            pytest.skip(f"{impl} runs on fp32 points on the CPU: the fp32 case times it")
    x, centroids = inputs(device, b, n, c, k, dtype)
    fn = IMPLS[impl]
    on_gpu = device == "cuda" and impl in KERNEL_IMPLS + ("reference",)
    if impl in ("sklearn", "faiss"):  # CPU libraries: their copy of the points is not timed
        x, centroids = x.float().cpu(), centroids.cpu()
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    fn(x, centroids)  # warm-up
    record_peak(benchmark, on_gpu, lambda: fn(x, centroids), lambda: cpu_peak_mib(
        f"from bench_kmeans import IMPLS, inputs\ndevice, mode, b, n, c, k, dtype = {('cpu',) + case[1:]!r}\n"
        "x, centroids = inputs('cpu', b, n, c, k, dtype)",
        f"IMPLS[{impl!r}](x, centroids)"))

    result = {}

    def run():
        result["out"] = fn(x, centroids)
        sync()

    benchmark.pedantic(run, rounds=20 if on_gpu else 5, iterations=1, warmup_rounds=1)
    out = result["out"]
    iterations = out if isinstance(out, int) else ITERATIONS
    benchmark.extra_info.update(impl=impl, device="cuda" if on_gpu else "cpu", mode=mode, B=b, n=n,
                                C=c, k=k, dtype=dtype, iterations=iterations, torch=torch.__version__)
    # the features as the implementation reads them: the fused kernel in their dtype, the
    # others in fp32
    itemsize = DTYPES[dtype].itemsize if impl in KERNEL_IMPLS else 4
    benchmark.extra_info["bytes"] = iterations * x.numel() * itemsize
    benchmark.extra_info["flops"] = iterations * 2 * b * n * k * c
