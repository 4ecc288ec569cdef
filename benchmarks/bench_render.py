"""A full mask figure on the CPU: a (randomly initialised) ResNet-50, one 448x448 image, taps
block2..block4, k in (2, 4, 6, 8), per-image K-Means with the [Re] paper's settings (k-means++,
n_init 10, max_iter 300, tol 1e-4), colours, overlays and the PNG: everything
``pyclr masks`` does for one image, forward pass included.

    pytest benchmarks/bench_render.py --benchmark-json=out.json

Compared in the same run: K-Means on pyclr's fused kernel, on the plain-PyTorch reference
step, and scikit-learn's KMeans (what the [Re] paper used: 32 s per image on a 4-core CPU),
each with 1 and 2 threads (torch's intra-op threads and, for scikit-learn, its OpenMP pool).
``extra_info`` holds the forward pass alone (``forward_s``), the time per clustering stage
is the rest. The random encoder's features are what the benchmark clusters: a trained one's
are better separated and usually converge in fewer Lloyd iterations.
"""
import time

import numpy as np
import pytest
import torch

from pyclr import _ops
from pyclr.render import default_encoder, extract_features, render_masks, square_image

TAPS = ("block2", "block3", "block4")
KS = (2, 4, 6, 8)
SIZE = 448
BACKENDS = ("pyclr", "torch", "sklearn")
THREADS = (1, 2)


def photograph() -> torch.Tensor:
    """scikit-image's cat (a natural photograph with parts), else a synthetic scene."""
    try:
        import skimage.data

        rgb = torch.from_numpy(skimage.data.chelsea().copy()).permute(2, 0, 1).float() / 255
    except ImportError:
        y, x = torch.meshgrid(torch.linspace(0, 1, SIZE), torch.linspace(0, 1, SIZE), indexing="ij")
        disk = ((y - 0.5) ** 2 + (x - 0.5) ** 2 < 0.1).float()
        rgb = torch.stack([disk * 0.8 + 0.1 * x, 0.5 * y, torch.sin(20 * x) * 0.3 + 0.4])
    return square_image(rgb, SIZE)[None]


@pytest.fixture(scope="module")
def encoder():
    return default_encoder(seed=0)


@pytest.fixture(scope="module")
def image():
    return photograph()


def thread_limits(threads: int):
    """torch's threads and scikit-learn's OpenMP/BLAS pools, restored afterwards."""
    from contextlib import ExitStack

    stack = ExitStack()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    stack.callback(torch.set_num_threads, previous)
    try:
        from threadpoolctl import threadpool_limits

        stack.enter_context(threadpool_limits(threads))
    except ImportError:
        pass
    return stack


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_full_figure(benchmark, encoder, image, backend, threads, tmp_path):
    if backend == "pyclr" and not _ops.has_kernel("kmeans_step", "cpu"):
        pytest.skip("pyclr's kmeans_step was not built for the CPU")
    if backend == "sklearn":
        pytest.importorskip("sklearn")
    with thread_limits(threads):
        extract_features(encoder, image, TAPS)  # warm-up: oneDNN primitives, allocator
        start = time.perf_counter()
        extract_features(encoder, image, TAPS)
        forward_s = time.perf_counter() - start
        result = {}

        def run():
            result["out"] = render_masks(encoder, image, taps=TAPS, ks=KS, backend=backend,
                                         out_dir=str(tmp_path), names=["chelsea"])

        # scikit-learn takes tens of seconds a figure: fewer rounds
        benchmark.pedantic(run, rounds=1 if backend == "sklearn" else 3, iterations=1, warmup_rounds=0)
    figure = result["out"].figures["chelsea"]
    assert figure.dtype == np.uint8 and figure.shape[0] > 3 * SIZE and figure.shape[1] > 4 * SIZE
    benchmark.extra_info.update(
        backend=backend, threads=threads, forward_s=forward_s, taps=list(TAPS), ks=list(KS), size=SIZE,
        n_init=10, encoder="resnet50 (random, seed 0)", device_name=f"cpu x{threads} threads",
        torch=torch.__version__)
