"""NT-Xent forward+backward: the fused kernel vs the eager plain-PyTorch reference, same run.

    pytest benchmarks/bench_ntxent.py --benchmark-json=out.json      (GPU cases run when there is one)

Each case records achieved TFLOP/s (counting 6 M^2 d: the forward's and the backward's two
matrix products) and the peak memory of one step beyond the inputs. dtype "tf32" is fp32 inputs
with torch.set_float32_matmul_precision("high"): one TF32 product in the fused kernel (3xTF32
under "fp32") and TF32 cuBLAS in the reference.
"""
import contextlib

import pytest
import torch

from memory import cpu_peak_mib, record_peak  # benchmarks/ is on sys.path (pytest prepends it)
from pyclr.losses import nt_xent, reference

IMPLS = {"fused": nt_xent, "reference": reference.nt_xent}
DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16}
GPU = torch.cuda.is_available()

CASES = [("cpu", 4096, 128, "fp32")]
if GPU:
    CASES += [("cuda", m, 128, dt) for m in (8192, 65536) for dt in ("bf16", "fp32", "tf32")]
    CASES += [("cuda", m, 128, "bf16") for m in (131072, 1048576)]  # beyond the reference


def inputs(device, m, d, dtype):
    gen = torch.Generator(device=device).manual_seed(0)
    z1 = torch.randn(m // 2, d, device=device, dtype=DTYPES[dtype], generator=gen).requires_grad_()
    z2 = torch.randn(m // 2, d, device=device, dtype=DTYPES[dtype], generator=gen).requires_grad_()
    return z1, z2


@contextlib.contextmanager
def matmul_precision(dtype):
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if dtype == "tf32" else "highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def step(fn, z1, z2):
    z1.grad = z2.grad = None
    fn(z1, z2, temperature=0.5).backward()


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("device,m,d,dtype", CASES, ids=lambda v: str(v))
def test_nt_xent_forward_backward(benchmark, impl, device, m, d, dtype):
    if impl == "reference" and device == "cuda" and m > 65536:
        pytest.skip("the eager reference runs out of memory here (M x M logits)")
    z1, z2 = inputs(device, m, d, dtype)
    fn = IMPLS[impl]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run():
        step(fn, z1, z2)
        sync()

    with matmul_precision(dtype):
        step(fn, z1, z2)  # warm-up
        record_peak(benchmark, device == "cuda", lambda: step(fn, z1, z2), lambda: cpu_peak_mib(
            f"from bench_ntxent import IMPLS, inputs, step\nz1, z2 = inputs('cpu', {m}, {d}, {dtype!r})",
            f"step(IMPLS[{impl!r}], z1, z2)"))
        # M = 2^20 is ~8e14 flops a step (seconds): a few rounds, warm from the smaller cases
        huge = m >= 2**20
        benchmark.pedantic(run, rounds=5 if device == "cpu" else 3 if huge else 20, iterations=1,
                           warmup_rounds=0 if huge else 1)
    benchmark.extra_info.update(impl=impl, device=device, m=m, d=d, dtype=dtype,
                                torch=torch.__version__)
    benchmark.extra_info["flops"] = 6 * m * m * d
    benchmark.extra_info["tflops"] = 6 * m * m * d / benchmark.stats.stats.median / 1e12
