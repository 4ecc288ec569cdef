"""The fused NT-Xent kernels against the plain-PyTorch reference (SPEC.md section 1)."""
import contextlib
import os
import subprocess
import sys

import pytest
import torch

from pyclr import _ops
from pyclr.losses import NTXentLoss, generalized_contrastive, logsumexp_uniformity, nt_xent, reference
from pyclr.losses._checks import TEMPERATURE_RANGE

from ..conftest import ABS_FLOOR, EMULATE_CUDA, max_error


def views(n, d, dtype, device, seed, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    z1 = (torch.randn(n, d, generator=gen, dtype=torch.float64) * scale).to(device, dtype)
    z2 = (torch.randn(n, d, generator=gen, dtype=torch.float64) * scale).to(device, dtype)
    return z1.requires_grad_(), z2.requires_grad_()


def loss_and_grads(fn, z1, z2, grad_seed=0, **options):
    """The loss and the gradients of <loss, g> for a fixed random g (covers every reduction)."""
    z1 = z1.detach().requires_grad_()
    z2 = z2.detach().requires_grad_()
    loss = fn(z1, z2, **options)
    g = torch.randn(loss.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=torch.float64)
    (loss * g.to(loss.device, loss.dtype)).sum().backward()
    return loss.detach(), z1.grad, z2.grad


def check_against_reference(z1, z2, **options):
    """Kernel error vs float64 at most 2x the reference's own error in the input dtype."""
    dtype = z1.dtype
    exact = loss_and_grads(reference.nt_xent, z1.double(), z2.double(), **options)
    fused = loss_and_grads(nt_xent, z1, z2, **options)
    ref_same_dtype = loss_and_grads(reference.nt_xent, z1, z2, **options)
    assert fused[0].dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert fused[1].dtype == dtype and fused[2].dtype == dtype
    for name, f, r, e in zip(("loss", "grad z1", "grad z2"), fused, ref_same_dtype, exact):
        assert torch.isfinite(f).all(), name
        allowed = 2 * max_error(r, e) + ABS_FLOOR[dtype] * (1 + e.abs().max().item())
        assert max_error(f, e) <= allowed, f"{name}: error {max_error(f, e):.3g} > {allowed:.3g}"


# The CUDA emulator (tests/emulation) takes minutes for the two largest; (70, 300) runs its fp32
# path that re-stages the row tile (d > 256) and a partial last d-chunk in seconds.
_EMULATOR_TOO_SLOW = pytest.mark.not_emulated("minutes in the CUDA emulator")
SHAPES = [(1, 1), (1, 8), (3, 5), (7, 33), (64, 128), (70, 300), (301, 17), (513, 64),
          pytest.param(1000, 512, marks=_EMULATOR_TOO_SLOW),
          pytest.param(2048, 128, marks=_EMULATOR_TOO_SLOW)]


@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("negatives", ["all", "cross"])
def test_matches_reference_shapes(device, n, d, negatives):
    z1, z2 = views(n, d, torch.float32, device, seed=n * 1000 + d)
    check_against_reference(z1, z2, negatives=negatives, reduction="none")


@pytest.mark.not_emulated("opcheck and torch.compile of torch.ops.pyclr itself")
def test_torch_compile_temperature_schedule(device):
    # from the second temperature on, torch.compile passes it as a symbolic float: the argument
    # check must compare it, not call math.isfinite (which broke the fullgraph trace)
    torch._dynamo.reset()
    compiled = torch.compile(lambda a, b, t: nt_xent(a, b, temperature=t), fullgraph=True)
    z1, z2 = (z.detach() for z in views(8, 4, torch.float32, device, seed=3))
    for t in (0.5, 0.3, 0.2):
        torch.testing.assert_close(compiled(z1, z2, t), nt_xent(z1, z2, t))
    # a bad one is still refused by name (fullgraph: torch wraps the ValueError it observed)
    with pytest.raises((ValueError, RuntimeError), match=r"temperature: expected a number in \[0.001"):
        compiled(z1, z2, 1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("temperature", [0.01, 0.1, 0.5, 2.0, 10.0])
@pytest.mark.parametrize("negatives", ["all", "cross"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_reference_options(device, dtype, temperature, negatives, reduction):
    z1, z2 = views(257, 96, dtype, device, seed=7)
    check_against_reference(z1, z2, temperature=temperature, negatives=negatives, reduction=reduction)


@pytest.mark.parametrize("temperature", [10.0, 100.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_reference_unnormalized(device, dtype, temperature):
    # the paper's "no l2 norm" ablation: raw embeddings with a large temperature
    z1, z2 = views(200, 64, dtype, device, seed=3)
    check_against_reference(z1, z2, temperature=temperature, normalize=False, reduction="none")


@pytest.mark.parametrize("temperature", TEMPERATURE_RANGE)  # the ends the losses accept
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_reference_at_the_ends_of_the_temperature_range(device, dtype, temperature):
    z1, z2 = views(64, 32, dtype, device, seed=11)
    check_against_reference(z1, z2, temperature=temperature, reduction="none")


@pytest.mark.parametrize("temperature", [9e-4, 1e-10, 2e6, 1e46])
def test_temperatures_outside_the_range_are_refused_by_every_loss(temperature):
    # tau = 1e-10 gave NaN from the fused kernel (the reference: 8.9e9)
    z = torch.randn(8, 4)
    calls = [lambda: nt_xent(z, z, temperature=temperature), lambda: reference.nt_xent(z, z, temperature=temperature),
             lambda: NTXentLoss(temperature=temperature), lambda: logsumexp_uniformity(z, temperature),
             lambda: reference.logsumexp_uniformity(z, temperature),
             lambda: generalized_contrastive(z, z, temperature=temperature)]
    for call in calls:
        with pytest.raises(ValueError, match=r"temperature: expected a number in \[0.001, 1e\+06\]"):
            call()


@pytest.mark.parametrize("negatives", ["all", "cross"])
@pytest.mark.parametrize("normalize", [True, False])
def test_gradcheck_float64(negatives, normalize):
    z1, z2 = views(5, 4, torch.float64, "cpu", seed=11)
    assert torch.autograd.gradcheck(
        lambda a, b: nt_xent(a, b, 0.7, normalize=normalize, negatives=negatives, reduction="none"),
        (z1, z2),
    )


@pytest.mark.not_emulated("opcheck and torch.compile of torch.ops.pyclr itself")
def test_opcheck(device):
    z = torch.randn(12, 8, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.pyclr.nt_xent_forward.default, (z, 0.5, 0, 0, 6))
    torch.library.opcheck(torch.ops.pyclr.nt_xent_forward.default, (z, 0.2, 1, 2, 3))
    loss, lse = torch.ops.pyclr.nt_xent_forward(z.detach(), 0.5, 0, 1, 4)
    g = torch.randn(8, device=device)
    torch.library.opcheck(torch.ops.pyclr.nt_xent_backward.default, (g, z.detach(), lse, 0.5, 0, 1, 4))
    # a dense transposed z: the kernels return a contiguous gradient, the fake kernel must say so
    # (it claimed z's strides: a compiled logsumexp_uniformity of such a z failed)
    zt = torch.randn(8, 12, device=device).t()
    loss, lse = torch.ops.pyclr.nt_xent_forward(zt, 0.5, 0, 0, 6)
    torch.library.opcheck(torch.ops.pyclr.nt_xent_backward.default,
                          (torch.randn(12, device=device), zt, lse, 0.5, 0, 0, 6))


@pytest.mark.not_emulated("opcheck and torch.compile of torch.ops.pyclr itself")
def test_torch_compile_model(device):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8)).to(device)
    criterion = NTXentLoss(temperature=0.2)

    def step(x1, x2):
        return criterion(model(x1), model(x2))

    x1, x2 = torch.randn(2, 24, 16, device=device)
    eager = step(x1, x2)
    eager.backward()
    eager_grad = model[0].weight.grad.clone()
    model.zero_grad()
    compiled = torch.compile(step, fullgraph=True)(x1, x2)
    compiled.backward()
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(model[0].weight.grad, eager_grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_zero_vectors_give_no_nan(device, dtype):
    z1, z2 = views(16, 32, dtype, device, seed=5)
    with torch.no_grad():
        z1[3] = 0
        z2[3] = 0
        z2[7] = 0
    loss = nt_xent(z1, z2)
    loss.backward()
    assert torch.isfinite(loss)
    if dtype != torch.float16:  # a zero row's gradient is 1/eps times its upstream one
        assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()
    else:
        assert not torch.isnan(z1.grad).any() and not torch.isnan(z2.grad).any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_zero_and_tiny_upstream_gradients(device, dtype):
    """The backward scales its 16-bit coefficients by a power of two taken from max|grad_loss|
    (read on the device): a zero upstream gradient gives exact zeros, and one of 1e-30 (fp32 and
    bf16 hold such gradients) the gradient at scale 1 times 1e-30, without underflow."""
    z1, z2 = views(40, 24, dtype, device, seed=8)
    (nt_xent(z1, z2, reduction="none") * 0).sum().backward()
    assert not z1.grad.any() and not z2.grad.any()
    if dtype == torch.float16:
        return
    grads = []
    for scale in (1.0, 1e-30):
        z1.grad = z2.grad = None
        (nt_xent(z1, z2) * scale).backward()
        grads.append(z1.grad.double() / scale)
    assert grads[0].abs().max() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-2, atol=1e-3 * grads[0].abs().max().item())


@pytest.mark.parametrize("negatives", ["all", "cross"])
@pytest.mark.parametrize("scale,temperature", [(1.0, 0.1), (30.0, 10.0), (300.0, 10.0), (3e4, 0.3)])
def test_large_logits_without_normalisation(device, negatives, scale, temperature):
    # normalize=False lets logits grow with the norms (|s| up to ~5e10 here). The positive's
    # score must come from the same logits as the log-sum-exp: a row whose positive dominates
    # then loses log(1 + the rest) >= 0 (a separate dot product made such rows negative, and
    # at |s| ~ 1e9 rounding overflowed exp: -inf losses, NaN gradients). The fp32 reference
    # gets these rows exactly right; the kernel must match it, and stay within 2x its error
    # (plus a floor) of float64 on random pairs. The CUDA backward recomputes each logit in
    # another tile order than the forward's, so its softmax weights carry an error of a few
    # ulps of the largest logit: its gradients are held to that (and to being finite).
    cuda_kernel = device.type == "cuda" or EMULATE_CUDA
    gen = torch.Generator().manual_seed(7)
    z1 = torch.randn(64, 16, generator=gen, dtype=torch.float64) * scale
    aligned = z1 + scale / 20 * torch.randn(64, 16, generator=gen, dtype=torch.float64)
    random = torch.randn(64, 16, generator=gen, dtype=torch.float64) * scale
    options = dict(temperature=temperature, normalize=False, negatives=negatives, reduction="none")
    for z2 in (aligned, random):
        exact = loss_and_grads(reference.nt_xent, z1, z2, **options)
        fused = loss_and_grads(nt_xent, z1.float().to(device), z2.float().to(device), **options)
        ref32 = loss_and_grads(reference.nt_xent, z1.float(), z2.float(), **options)
        largest_logit = (torch.cat([z1, z2]) @ torch.cat([z1, z2]).T).abs().max().item() / temperature
        for i, (got, want, own) in enumerate(zip(fused, exact, ref32)):
            got = got.cpu().double()
            assert torch.isfinite(got).all()
            err, ref_err = max_error(got, want), max_error(own.double(), want)
            floor = ABS_FLOOR[torch.float32] * max(1.0, want.abs().max().item())
            if cuda_kernel and i > 0:  # gradients
                floor = max(floor, 4 * 2.0 ** -23 * largest_logit * want.abs().max().item())
            assert err <= 2 * ref_err + floor, (i, err, ref_err)
        assert (fused[0] >= 0).all()


@pytest.mark.parametrize("negatives", ["all", "cross"])
def test_nan_rows_poison_every_row_like_the_reference(device, negatives):
    """A NaN in the inputs is not hidden: every row whose denominator sees it is NaN, as in
    the reference, even when the NaN rows fill the first column tiles the kernel visits (70
    rows: more than one 64-row tile)."""
    z1, z2 = views(150, 16, torch.float32, device, seed=6)
    with torch.no_grad():
        z1[:70] = float("nan")
    fused = nt_xent(z1, z2, negatives=negatives, reduction="none")
    expected = reference.nt_xent(z1, z2, negatives=negatives, reduction="none")
    assert torch.isnan(expected[150:]).all()  # view-2 anchors all see the NaN rows of view 1
    assert torch.equal(torch.isnan(fused), torch.isnan(expected))


def test_small_temperature_bf16_does_not_overflow(device):
    z1, z2 = views(300, 64, torch.bfloat16, device, seed=9)
    check_against_reference(z1, z2, temperature=0.01)
    loss = nt_xent(z1, z2, temperature=0.01, normalize=False)  # logits up to ~1e4
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z1.grad).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("negatives", ["all", "cross"])
def test_aligned_pairs_16bit_gradients_at_rounding_floor(device, dtype, negatives):
    """Trained views are nearly aligned: at tau = 0.1 the positive's weight P_jp is close to 1,
    so its coefficient w_j P_jp + w_p P_pj nearly cancels the positive term -(w_j + w_p). A
    kernel that rounds that coefficient to 16 bits before the cancellation has a gradient
    error of 1e-2 (bf16; emulated) instead of the ~2e-3 of rounding the result: the gradient
    must stay within twice that floor of float64 on the same inputs."""
    gen = torch.Generator().manual_seed(12)
    base = torch.nn.functional.normalize(torch.randn(256, 128, generator=gen, dtype=torch.float64), dim=1)
    noisy = base + 0.1 / 128 ** 0.5 * torch.randn(256, 128, generator=gen, dtype=torch.float64)
    z1 = base.to(device, dtype)
    z2 = torch.nn.functional.normalize(noisy, dim=1).to(device, dtype)
    options = dict(temperature=0.1, normalize=False, negatives=negatives)
    _, g1, g2 = loss_and_grads(nt_xent, z1, z2, **options)
    _, e1, e2 = loss_and_grads(reference.nt_xent, z1.double(), z2.double(), **options)
    floor = {torch.bfloat16: 2 ** -8, torch.float16: 2 ** -11}[dtype]  # a result rounding, relative
    for g, e in ((g1, e1), (g2, e2)):
        error = ((g.double() - e.cpu()).norm() / e.norm()).item()
        assert error < 2 * floor, f"relative gradient error {error:.3g} >= {2 * floor:.3g}"


def _tf32(x: torch.Tensor) -> torch.Tensor:
    """x rounded to TF32 (10 mantissa bits; halves away from zero)."""
    bits = x.float().contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


@contextlib.contextmanager
def cuda_matmul_tf32(allowed: bool):
    """Allows or forbids TF32 in fp32 matrix products on CUDA only (torch.backends.cuda.matmul,
    what torch.mm reads; the CPU's matmul precision is left alone), then restores the setting
    as it was: the string of torch >= 2.9 (which keeps "none", inherit), else allow_tf32."""
    matmul = torch.backends.cuda.matmul
    name, value = (("fp32_precision", "tf32" if allowed else "ieee") if hasattr(matmul, "fp32_precision")
                   else ("allow_tf32", allowed))
    previous = getattr(matmul, name)
    setattr(matmul, name, value)
    try:
        yield
    finally:
        setattr(matmul, name, previous)


@pytest.mark.skipif(os.environ.get("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE") == "1",
                    reason="TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 allows TF32 whatever the setting")
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_fp32_products_follow_torch_matmul_precision(device, temperature):
    """With TF32 allowed for fp32 matrix products on CUDA (as torch.mm reads it), the CUDA
    kernels take one TF32 product instead of three (3xTF32, about fp32's accuracy); the CPU
    kernels do not read that setting.

    Forward, told apart exactly: z = t (1 + 2^-13) with t exact in TF32, so TF32 rounds z to t
    (the added part is below half a TF32 unit) while fp32 holds z exactly: the loss must be
    the float64 loss of z without TF32, and with it that of t (the two differ by far more than
    fp32's rounding; the positive's score is read from the same products as the lse).
    Gradients, on inputs exact in TF32: one TF32 product rounds the fp32 coefficients to TF32
    (an error of a few TF32 units of the gradient, far above fp32's), three keep them (fp32's
    error)."""
    options = dict(temperature=temperature, normalize=False, reduction="none")
    gen = torch.Generator().manual_seed(3)
    # aligned views around a shared direction: every score is well above 0, so TF32's
    # rounding moves the lse (not only the positive's score)
    base = torch.randn(130, 96, generator=gen, dtype=torch.float64) + 2 * torch.randn(96, generator=gen,
                                                                                  dtype=torch.float64)
    t1, t2 = (_tf32(torch.nn.functional.normalize(base + 0.5 * torch.randn(base.shape, generator=gen,
                                                                           dtype=torch.float64), dim=1))
              for _ in range(2))
    z1, z2 = (t * (1 + 2.0 ** -13) for t in (t1, t2))  # exact in fp32 (11 + 13 bits)
    assert torch.equal(_tf32(z1), t1) and torch.equal(_tf32(z2), t2)
    cuda_kernel = device.type == "cuda" or EMULATE_CUDA

    def run(allowed, a, b):
        with cuda_matmul_tf32(allowed):
            return loss_and_grads(nt_xent, a.to(device), b.to(device), **options)

    of_t = reference.nt_xent(t1.double(), t2.double(), **options)
    of_z = reference.nt_xent(z1.double(), z2.double(), **options)
    m = 2 * len(z1)
    of_tf32 = of_t
    gap = max_error(of_tf32, of_z)
    assert gap > 100 * 2.0 ** -24 * of_z.abs().max().item()  # the inputs tell them apart
    assert max_error(run(False, z1, z2)[0], of_z) <= gap / 10, "3xTF32 forward"
    assert max_error(run(True, z1, z2)[0], of_tf32 if cuda_kernel else of_z) <= gap / 10, "TF32 forward"

    # Gradients on inputs exact in TF32: the kernels' products sum A_kj z_j over the rows j,
    # A_kj = (g_k P_kj + g_j P_jk) / tau (g: the loss's upstream gradient, P: the softmax
    # weights; the positive's term is applied in fp32 apart). TF32 rounds each A_kj by at most
    # 2^-10 of it (truncation; 2^-11 rounding), so the error of element (k, e) is within
    # 2^-10 sum_j |A_kj| |z_je|; the bound allows twice that.
    zc = torch.cat((t1, t2)).double()
    logits = zc @ zc.T / temperature
    logits.fill_diagonal_(-torch.inf)
    weights = torch.softmax(logits, 1)
    g = torch.randn(m, generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # loss_and_grads'
    terms = ((g[:, None] * weights + (g[:, None] * weights).T).abs() / temperature) @ zc.abs()
    exact = torch.cat(loss_and_grads(reference.nt_xent, t1.double(), t2.double(), **options)[1:])
    default, fast = (torch.cat(run(allowed, t1, t2)[1:]).cpu().double() for allowed in (False, True))
    assert ((fast - exact).abs() <= 2.0 ** -9 * terms).all(), "TF32 gradients"
    assert ((default - exact).abs() <= 2.0 ** -12 * terms).all(), "3xTF32 gradients"
    if cuda_kernel:
        assert max_error(fast, exact) > 10 * max_error(default, exact), "TF32 gradients: TF32 taken"
    else:
        assert torch.equal(fast, default)


def test_identical_views_lower_the_loss(device):
    z1, z2 = views(64, 16, torch.float32, device, seed=1)
    assert nt_xent(z1, z1.detach().clone()) < nt_xent(z1, z2)


def test_module_matches_function(device):
    z1, z2 = views(33, 12, torch.float32, device, seed=2)
    module = NTXentLoss(temperature=0.3, negatives="cross", reduction="sum")
    torch.testing.assert_close(module(z1, z2), nt_xent(z1, z2, 0.3, negatives="cross", reduction="sum"))
    assert "negatives='cross'" in repr(module)


def test_anchor_subset_matches_full_rows():
    # gather_distributed's kernel path: anchors = one rank's rows of the gathered batch
    z = torch.nn.functional.normalize(torch.randn(40, 8, dtype=torch.float64), dim=1)
    full_loss, full_lse = torch.ops.pyclr.nt_xent_forward(z, 0.4, 0, 0, 20)
    part_loss, part_lse = torch.ops.pyclr.nt_xent_forward(z, 0.4, 0, 5, 10)
    rows = torch.cat([torch.arange(5, 15), torch.arange(25, 35)])
    torch.testing.assert_close(part_loss, full_loss[rows])
    g_full = torch.zeros(40, dtype=torch.float64)
    g_part = torch.randn(20, dtype=torch.float64)
    g_full[rows] = g_part
    torch.testing.assert_close(
        torch.ops.pyclr.nt_xent_backward(g_part, z, part_lse, 0.4, 0, 5, 10),
        torch.ops.pyclr.nt_xent_backward(g_full, z, full_lse, 0.4, 0, 0, 20),
    )


# --- bad input: a clear error naming the argument, before any kernel runs ---

def good():
    return torch.randn(4, 3), torch.randn(4, 3)


@pytest.mark.parametrize("fn", [nt_xent, reference.nt_xent])
@pytest.mark.parametrize(
    "z1,z2,kwargs,error,match",
    [
        (torch.randn(4, 3), torch.randn(5, 3), {}, ValueError, "same shape"),
        (torch.randn(4, 3, 2), torch.randn(4, 3, 2), {}, ValueError, "z1: expected a 2-D"),
        (torch.randn(4), torch.randn(4), {}, ValueError, "z1: expected a 2-D"),
        (torch.randn(0, 3), torch.randn(0, 3), {}, ValueError, "non-empty"),
        (torch.randn(4, 0), torch.randn(4, 0), {}, ValueError, "non-empty"),
        (torch.ones(4, 3, dtype=torch.int64), torch.ones(4, 3, dtype=torch.int64), {}, TypeError, "z1: expected"),
        ([[1.0]], torch.randn(1, 1), {}, TypeError, "z1: expected a torch.Tensor"),
        (torch.randn(4, 3), torch.randn(4, 3, dtype=torch.float16), {}, TypeError, "same dtype"),
        (torch.randn(4, 3), torch.randn(4, 3, device="meta"), {}, ValueError, "same device"),
        (*good(), {"temperature": 0}, ValueError, "temperature"),
        (*good(), {"temperature": -1.0}, ValueError, "temperature"),
        (*good(), {"temperature": float("nan")}, ValueError, "temperature"),
        (*good(), {"temperature": float("inf")}, ValueError, "temperature"),
        (*good(), {"temperature": "0.5"}, TypeError, "temperature"),
        (*good(), {"temperature": True}, TypeError, "temperature"),
        (*good(), {"negatives": "some"}, ValueError, "negatives"),
        (*good(), {"reduction": "avg"}, ValueError, "reduction"),
        (*good(), {"normalize": "yes"}, TypeError, "normalize"),
        (*good(), {"gather_distributed": 1}, TypeError, "gather_distributed"),
    ],
)
def test_bad_input(fn, z1, z2, kwargs, error, match):
    with pytest.raises(error, match=match):
        fn(z1, z2, **kwargs)


def test_sparse_views_are_refused_by_name():
    z = torch.randn(4, 3).to_sparse()  # was torch's 'norm_sparse' error
    for fn in (nt_xent, reference.nt_xent):
        with pytest.raises(TypeError, match="z1: expected a dense tensor, got layout torch.sparse_coo"):
            fn(z, z)
    with pytest.raises(TypeError, match="z: expected a dense tensor"):
        logsumexp_uniformity(z)


def test_bad_module_options():
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature=0.0)
    with pytest.raises(ValueError, match="negatives"):
        NTXentLoss(negatives="other")


def test_op_boundary_checks():
    z = torch.randn(6, 4)
    with pytest.raises(RuntimeError, match="z: expected an even number of rows"):
        torch.ops.pyclr.nt_xent_forward(torch.randn(5, 4), 0.5, 0, 0, 2)
    # offset + count wrapped around in int64 for the last two, and passed the check (on CUDA a
    # row index of -1); the CPU stopped later in narrow, by chance
    for offset, count in ((2, 2), (2 ** 63 - 1, 1), (2 ** 62, 2 ** 62), (0, 4)):
        with pytest.raises(RuntimeError, match="anchor_offset/anchor_count"):
            torch.ops.pyclr.nt_xent_forward(z, 0.5, 0, offset, count)
    # the losses' range (TEMPERATURE_RANGE): the op took any positive one, and 1/tau overflowed
    # float32 below ~3e-39 (a NaN loss)
    for temperature in (0.0, 1e-39, 9e-4, 2e6, float("nan"), float("inf")):
        with pytest.raises(RuntimeError, match=r"temperature: expected a number in \[1e-3, 1e6\]"):
            torch.ops.pyclr.nt_xent_forward(z, temperature, 0, 0, 3)
    for temperature in TEMPERATURE_RANGE:
        assert torch.isfinite(torch.ops.pyclr.nt_xent_forward(z, temperature, 0, 0, 3)[0]).all()
    with pytest.raises(RuntimeError, match="negatives"):
        torch.ops.pyclr.nt_xent_forward(z, 0.5, 3, 0, 3)
    with pytest.raises(RuntimeError, match="grad_loss: expected shape"):
        _, lse = torch.ops.pyclr.nt_xent_forward(z, 0.5, 0, 0, 3)
        torch.ops.pyclr.nt_xent_backward(torch.ones(5), z, lse, 0.5, 0, 0, 3)


def test_float64_rejected_on_cuda_kernel_path(monkeypatch):
    # the CUDA kernels take fp32/bf16/fp16 only; checked in Python before the device is touched
    z = torch.randn(4, 3, dtype=torch.float64, device="meta")
    with pytest.raises(TypeError, match="float64 on the CPU"):
        nt_xent(z, z)


def test_cuda_tensor_without_cuda_kernels_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_ops, "has_kernel", lambda op, device_type: device_type == "cpu")
    with pytest.raises(RuntimeError, match="built without CUDA kernels"):
        _ops.require_kernel("nt_xent_forward", torch.device("cuda"))


def test_avx2_build_on_cpu_without_avx2_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_ops, "CPU_KERNELS_USABLE", False)
    monkeypatch.setattr(_ops, "has_kernel", lambda op, device_type: False)
    with pytest.raises(RuntimeError, match="PYCLR_CPU_AVX2=0"):
        _ops.require_kernel("nt_xent_forward", torch.device("cpu"))


def test_no_quadratic_memory_on_cpu():
    """M = 32768 rows: the M x M fp32 matrix alone would be 4 GiB; the kernel's peak stays small."""
    code = (
        "import resource, torch\n"
        "from pyclr.losses import nt_xent\n"
        "z1 = torch.randn(16384, 8, requires_grad=True); z2 = torch.randn(16384, 8, requires_grad=True)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "nt_xent(z1, z2).backward()\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert int(out.stdout.strip()) < 256, f"peak grew by {out.stdout.strip()} MiB"


def test_logits_past_the_accumulator_are_refused_without_normalisation():
    # normalize=False on rows of norm ~1e20: logits of 1e40 overflowed float32 and inf - inf
    # made the loss and every gradient NaN, from finite inputs
    z = torch.full((2, 2), 1e20)
    with pytest.raises(ValueError, match=r"z1, z2: with normalize=False the logits z_i . z_k / temperature reach up "
                                         r"to 4e\+40 \(largest row norm 1.41e\+20\), beyond the 2.13e\+37 that the "
                                         r"float32 accumulator sums over 4 rows"):
        nt_xent(z, z.clone(), normalize=False)
    with pytest.raises(ValueError, match="z1, z2: expected finite values, got a row of norm nan"):
        nt_xent(torch.full((2, 2), float("nan")), z, normalize=False)
    big = torch.randn(8, 4, generator=torch.Generator().manual_seed(0)) * 1e15  # logits ~1e30: fine
    loss = nt_xent(big.requires_grad_(), big.detach() * 1.01, normalize=False, temperature=1.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(big.grad).all()
    assert torch.isfinite(nt_xent(z, z.clone()))  # normalised rows: any magnitude
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():  # no value to read: the check steps aside
        assert nt_xent(torch.randn(4, 3), torch.randn(4, 3), normalize=False).shape == ()
