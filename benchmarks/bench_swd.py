"""Sliced Wasserstein forward+backward: the fused kernel vs the eager plain-PyTorch reference
(torch.sort) and POT (``ot.sliced_wasserstein_distance`` on torch tensors, squared), same run.

    pytest benchmarks/bench_swd.py --benchmark-json=out.json      (GPU cases run when there is one)

Each case records the peak memory of one step beyond the inputs and the rate at which
projected values are sorted (2 M L per step: the data's and the prior's).
"""
import pytest
import torch

from memory import cpu_peak_mib, record_peak  # benchmarks/ is on sys.path (pytest prepends it)
from pyclr.losses import reference
from pyclr.losses.priors import random_projections, sample_prior
from pyclr.losses.swd import sliced_wasserstein

def pot_swd(h, prior_samples, projections):
    import ot

    # POT multiplies in one dtype: the inputs' (h's)
    dist = ot.sliced_wasserstein_distance(h, prior_samples.to(h.dtype),
                                          projections=projections.to(h.dtype), p=2)
    return dist**2


IMPLS = {"fused": sliced_wasserstein, "reference": reference.sliced_wasserstein, "pot": pot_swd}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
GPU = torch.cuda.is_available()

# issue 3's sizes: CPU M = 8192, d = L = 128; H100 M = 65,536, d = L = 128 (eager: 3.5 ms) and
# M = 262,144 with L = 1024 (eager: 94 ms, 16 GB peak). The d = 128 cannot hold 1024
# orthonormal columns (SPEC.md section 2: L <= d), so that case is d = L = 1024: the same
# 2^28 projected values to sort, with a d x L product 8x larger (in both implementations).
CASES = [("cpu", 8192, 128, 128, "fp32")]
if GPU:
    CASES += [("cuda", 65536, 128, 128, dt) for dt in ("fp32", "bf16")]
    CASES += [("cuda", 262144, 1024, 1024, dt) for dt in ("fp32", "bf16")]


def inputs(device, m, d, num_proj, dtype):
    gen = torch.Generator(device=device).manual_seed(0)
    h = torch.randn(m, d, device=device, dtype=DTYPES[dtype], generator=gen).requires_grad_()
    prior = sample_prior("gaussian", m, d, gen, device=device)
    projections = random_projections(d, num_proj, gen, device=device)
    return h, prior, projections


def step(fn, h, prior, projections):
    h.grad = None
    fn(h, prior, projections).backward()


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("device,m,d,num_proj,dtype", CASES, ids=lambda v: str(v))
def test_swd_forward_backward(benchmark, impl, device, m, d, num_proj, dtype):
    if impl == "pot":
        pytest.importorskip("ot")
    args = inputs(device, m, d, num_proj, dtype)
    fn = IMPLS[impl]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    step(fn, *args)  # warm-up
    record_peak(benchmark, device == "cuda", lambda: step(fn, *args), lambda: cpu_peak_mib(
        f"from bench_swd import IMPLS, inputs, step\nargs = inputs('cpu', {m}, {d}, {num_proj}, {dtype!r})",
        f"step(IMPLS[{impl!r}], *args)"))

    def run():
        step(fn, *args)
        sync()

    benchmark.pedantic(run, rounds=5 if device == "cpu" or m * num_proj >= 2**28 else 20, iterations=1,
                       warmup_rounds=1)
    benchmark.extra_info.update(impl=impl, device=device, m=m, d=d, num_projections=num_proj,
                                dtype=dtype, torch=torch.__version__)
    benchmark.extra_info["msorted_per_s"] = 2 * m * num_proj / benchmark.stats.stats.mean / 1e6
