"""Small calls of every CUDA operator, forward and backward, for compute-sanitizer
(memcheck, racecheck): odd sizes that leave partial tiles, every dtype and mode.

    compute-sanitizer --tool memcheck python3 benchmarks/sanitize_case.py
"""
import torch

from pyclr import _ops
from pyclr.losses import logsumexp_uniformity, nt_xent, random_projections, sample_prior, sliced_wasserstein

assert torch.cuda.is_available(), "needs a GPU"
gen = torch.Generator().manual_seed(0)
for dtype in (torch.float32, torch.bfloat16, torch.float16):
    for n, d in ((1, 1), (37, 70), (130, 136)):
        z1, z2 = (torch.randn(n, d, generator=gen).to("cuda", dtype).requires_grad_() for _ in range(2))
        for negatives in ("all", "cross"):
            nt_xent(z1, z2, 0.3, negatives=negatives).backward()
        h = torch.cat([z1, z2])
        logsumexp_uniformity(torch.nn.functional.normalize(h.float(), dim=1).to(dtype)).backward()
        if _ops.has_kernel("swd_forward", "cuda"):
            w = random_projections(d, max(1, d - 3), gen, device="cuda")
            p = sample_prior("gaussian", 2 * n, d, gen, device="cuda")
            sliced_wasserstein(h, p, w).backward()
torch.cuda.synchronize()
print("sanitize_case: done")
