"""Small calls of every CUDA operator, forward and backward, for compute-sanitizer
(memcheck, racecheck): odd sizes that leave partial tiles, every dtype and mode, and the
NT-Xent anchor window (offset > 0, count < N) that only multi-GPU gathering uses otherwise.

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck python3 benchmarks/sanitize_case.py

(without the caching allocator's big segments, an access past a tensor's end is one memcheck sees)
"""
import os

import torch

from pyclr import _ops
from pyclr.losses import logsumexp_uniformity, nt_xent, random_projections, sample_prior, sliced_wasserstein

assert torch.cuda.is_available(), "needs a GPU"
gen = torch.Generator().manual_seed(0)
ALL, CROSS = 0, 1  # csrc/ntxent/ntxent.h: enum Negatives
for dtype in (torch.float32, torch.bfloat16, torch.float16):
    for n, d in ((1, 1), (37, 70), (130, 136)):
        z1, z2 = (torch.randn(n, d, generator=gen).to("cuda", dtype).requires_grad_() for _ in range(2))
        for negatives in ("all", "cross"):
            nt_xent(z1, z2, 0.3, negatives=negatives).backward()
        if dtype == torch.float32:  # the single-TF32 kernels (3xTF32 is the default)
            torch.set_float32_matmul_precision("high")
            nt_xent(z1, z2, 0.3).backward()
            torch.set_float32_matmul_precision("highest")
        h = torch.cat([z1, z2])
        logsumexp_uniformity(torch.nn.functional.normalize(h.float(), dim=1).to(dtype)).backward()
        if n > 2:  # a window of anchors, as one rank of a gathered batch computes
            z = torch.nn.functional.normalize(h.detach().float(), dim=1).to(dtype)
            offset, count = n // 3, n - n // 3 - 1
            for code in (ALL, CROSS):
                loss, lse = torch.ops.pyclr.nt_xent_forward(z, 0.3, code, offset, count)
                torch.ops.pyclr.nt_xent_backward(torch.rand_like(loss), z, lse, 0.3, code, offset, count)
        if _ops.has_kernel("swd_forward", "cuda"):
            w = random_projections(d, max(1, d - 3), gen, device="cuda")
            p = sample_prior("gaussian", 2 * n, d, gen, device="cuda")
            sliced_wasserstein(h, p, w).backward()
    if _ops.has_kernel("kmeans_step", "cuda"):
        # both kernels: one-pass on the first four shapes (C <= 2048), two-pass on the last
        # (C > 2048) and, forced, on all
        for two_pass in ("0", "1"):
            os.environ["PYCLR_KMEANS_TWO_PASS"] = two_pass
            for b, points, c, k in ((1, 1, 1, 1), (3, 131, 37, 5), (2, 1000, 300, 9),
                                    (1, 70, 2048, 3), (1, 40, 2053, 2)):
                x = torch.randn(b, points, c, generator=gen).to("cuda", dtype)
                centroids = torch.randn(b, k, c, generator=gen).cuda()
                torch.ops.pyclr.kmeans_step(x, centroids)
        del os.environ["PYCLR_KMEANS_TWO_PASS"]
torch.cuda.synchronize()
print("sanitize_case: done")
