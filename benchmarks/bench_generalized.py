"""The generalized contrastive loss, forward+backward: fused vs the eager reference, same run.

    pytest benchmarks/bench_generalized.py --benchmark-json=out.json

The logsumexp variant runs on the NT-Xent kernels (self-included mode): 6 M^2 d FLOPs, like
NT-Xent. The SWD variant's projections and sorts are benchmarked alone in bench_swd.py.
"""
import pytest
import torch

from pyclr.losses import generalized_contrastive, reference

from bench_ntxent import DTYPES, GPU  # benchmarks/ is on sys.path (pytest prepends it)
from memory import record_peak

IMPLS = {"fused": generalized_contrastive, "reference": reference.generalized_contrastive}
CASES = [("cpu", 4096, 128, "fp32")]
if GPU:
    CASES += [("cuda", 65536, 128, dt) for dt in ("bf16", "fp32")] + [("cuda", 262144, 128, "bf16")]


def views(device, m, d, dtype):
    gen = torch.Generator(device=device).manual_seed(0)
    return [torch.randn(m // 2, d, device=device, dtype=DTYPES[dtype], generator=gen).requires_grad_()
            for _ in range(2)]


def step(fn, z1, z2):
    z1.grad = z2.grad = None
    fn(z1, z2, distribution="logsumexp", temperature=0.5).backward()


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("device,m,d,dtype", CASES, ids=str)
def test_logsumexp_forward_backward(benchmark, impl, device, m, d, dtype):
    if impl == "reference" and device == "cuda" and m > 65536:
        pytest.skip("the eager reference runs out of memory here (M x M logits)")
    z1, z2 = views(device, m, d, dtype)
    fn = IMPLS[impl]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    step(fn, z1, z2)
    record_peak(benchmark, device == "cuda", lambda: step(fn, z1, z2))

    def run():
        step(fn, z1, z2)
        sync()

    benchmark.pedantic(run, rounds=5 if device == "cpu" else 20, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(impl=impl, device=device, m=m, d=d, dtype=dtype, torch=torch.__version__,
                                flops=6 * m * m * d)
