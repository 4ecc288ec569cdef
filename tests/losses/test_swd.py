"""The fused sliced-Wasserstein kernels against the plain-PyTorch reference (SPEC.md section 2)."""
import pytest
import torch

from pyclr import _ops
from pyclr.losses import reference
from pyclr.losses.priors import PRIORS, random_projections, sample_prior
from pyclr.losses._checks import check_kernel_dtype
from pyclr.losses.swd import sliced_wasserstein

from ..conftest import ABS_FLOOR, max_error

ACC = {torch.float64: torch.float64, torch.float32: torch.float32, torch.bfloat16: torch.float32,
       torch.float16: torch.float32}


def separated_rows(w, m, gen):
    """(m, d) rows whose projections h w are, in every column, a random permutation of m points
    spaced 4/m apart on [-2, 2], each moved by at most a quarter of the spacing, plus a random
    component off the span of w. Neighbours stay >= 2/m apart, far beyond fp32 rounding, so any
    two correct fp32 implementations rank them alike. A few thousand plain random rows have
    near-ties at that precision, where the gradient legitimately jumps by a gap between prior
    values (1e-2 of its size, both for the kernel and the fp32 reference): the sort permutation
    is discontinuous, the loss is not."""
    d, num_proj = w.shape
    spacing = 4.0 / m
    grid = torch.linspace(-2 + spacing / 2, 2 - spacing / 2, m, dtype=torch.float64)
    x = torch.stack([grid[torch.randperm(m, generator=gen)] for _ in range(num_proj)], dim=1)
    x += (torch.rand(m, num_proj, generator=gen, dtype=torch.float64) - 0.5) * (spacing / 2)
    noise = torch.randn(m, d, generator=gen, dtype=torch.float64)
    return x @ w.T + noise - (noise @ w) @ w.T


def problem(m, d, num_proj, prior, dtype, device, seed, separated=True):
    """Fresh h (in dtype), prior samples and projections (float32, as the loss draws them)."""
    gen = torch.Generator().manual_seed(seed)
    w = random_projections(d, num_proj, gen)
    p = sample_prior(prior, m, d, gen)
    h = separated_rows(w.double(), m, gen) if separated else torch.randn(m, d, generator=gen, dtype=torch.float64)
    return h.to(device, dtype), p.to(device), w.to(device)


def loss_and_grad(fn, h, p, w):
    h = h.detach().requires_grad_()
    loss = fn(h, p, w)
    (loss * 1.7).backward()  # an upstream gradient other than 1
    return loss.detach(), h.grad


def check_against_reference(h, p, w, grad=True):
    """Kernel error vs float64 at most 2x the reference's own error in h's dtype, plus a floor
    relative to the value's size (the gradient is O(1 / (M L)), so an absolute floor would hide
    any error in it)."""
    dtype = h.dtype
    exact = loss_and_grad(reference.sliced_wasserstein, h.double(), p.double(), w.double())
    fused = loss_and_grad(sliced_wasserstein, h, p, w)
    same_dtype = loss_and_grad(reference.sliced_wasserstein, h, p, w)
    assert fused[0].dtype == ACC[dtype] and fused[0].shape == ()
    assert fused[1].dtype == dtype
    names = ("loss", "grad h") if grad else ("loss",)
    for name, f, r, e in zip(names, fused, same_dtype, exact):
        assert torch.isfinite(f).all(), name
        allowed = 2 * max_error(r, e) + ABS_FLOOR[dtype] * e.abs().max().item()
        assert max_error(f, e) <= allowed, f"{name}: error {max_error(f, e):.3g} > {allowed:.3g}"


DIMS = [(1, 1), (3, 1), (3, 2), (3, 3), (64, 1), (64, 17), (64, 64), (130, 1), (130, 50), (130, 130)]


@pytest.mark.parametrize("m", [1, 7, 256, 3001])
@pytest.mark.parametrize("d,num_proj", DIMS)
@pytest.mark.parametrize("prior", PRIORS)
def test_matches_reference_shapes(device, m, d, num_proj, prior):
    h, p, w = problem(m, d, num_proj, prior, torch.float32, device, seed=m * 1000 + d + num_proj)
    check_against_reference(h, p, w)


@pytest.mark.parametrize("m,d,num_proj", [(5, 3, 2), (257, 64, 64), (4096, 32, 8)])
@pytest.mark.parametrize("prior", PRIORS)
def test_loss_matches_reference_plain_random_rows(device, m, d, num_proj, prior):
    # the loss is continuous in h, so near-ties of plain random rows do not matter to it
    h, p, w = problem(m, d, num_proj, prior, torch.float32, device, seed=m + d, separated=False)
    check_against_reference(h, p, w, grad=False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("m,d,num_proj", [(257, 96, 96), (1000, 64, 16)])
@pytest.mark.parametrize("prior", PRIORS)
def test_matches_reference_dtypes(device, dtype, m, d, num_proj, prior):
    if dtype == torch.float64 and device.type == "cuda":
        pytest.skip("the CUDA kernel takes float32, bfloat16 and float16")
    h, p, w = problem(m, d, num_proj, prior, dtype, device, seed=m + num_proj)
    check_against_reference(h, p, w)


def test_prior_and_projections_of_other_dtypes(device):
    # both are cast to the accumulation dtype inside the op
    h, p, w = problem(300, 16, 8, "gaussian", torch.bfloat16, device, seed=4)
    assert torch.equal(sliced_wasserstein(h, p.double(), w.double()), sliced_wasserstein(h, p, w))
    cast, _ = torch.ops.pyclr.swd_forward(h, p.bfloat16().float(), w.half().float())
    assert torch.equal(sliced_wasserstein(h, p.bfloat16(), w.half()), cast)


def test_more_projections_than_one_sort_call_takes(device):
    """The CUDA kernel sorts at most 256 projections per CUB call (more would make CUB
    synchronise with the host): 520 projections take three calls, the last one short."""
    h, p, w = problem(257, 600, 520, "hypersphere", torch.float32, device, seed=11)
    check_against_reference(h, p, w)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_under_autocast(device, dtype):
    """Training runs the loss inside torch.autocast (bf16 by default on a GPU): the op's own
    products stay in the accumulation dtype, so the loss and gradient equal those outside it."""
    h, p, w = problem(300, 16, 8, "gaussian", dtype, device, seed=7)
    expected = loss_and_grad(sliced_wasserstein, h, p, w)
    with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16):
        got = loss_and_grad(sliced_wasserstein, h, p, w)
    for e, g in zip(expected, got):
        assert g.dtype == e.dtype and torch.equal(g, e)


@pytest.mark.parametrize("m,d,num_proj", [(6, 4, 3), (9, 3, 3), (1, 2, 2)])
def test_gradcheck_float64(m, d, num_proj):
    h, p, w = problem(m, d, num_proj, "gaussian", torch.float64, "cpu", seed=11, separated=False)
    p, w = p.double(), w.double()
    assert torch.autograd.gradcheck(lambda x: sliced_wasserstein(x, p, w), (h.requires_grad_(),))


@pytest.mark.parametrize("m,d,num_proj", [(50, 5, 5), (2000, 20, 7)])
@pytest.mark.parametrize("prior", PRIORS)
def test_square_of_pot(m, d, num_proj, prior):
    ot = pytest.importorskip("ot")
    h, p, w = problem(m, d, num_proj, prior, torch.float64, "cpu", seed=m, separated=False)
    p, w = p.double(), w.double()
    pot = ot.sliced_wasserstein_distance(h, p, projections=w, p=2)
    torch.testing.assert_close(sliced_wasserstein(h, p, w), pot**2, rtol=1e-10, atol=0)


def test_residual_contract():
    """The op's residual pairs each row with the prior value of the same rank (csrc/swd/swd.h)."""
    h, p, w = problem(40, 6, 4, "hypercube", torch.float64, "cpu", seed=8, separated=False)
    p, w = p.double(), w.double()
    loss, residual = torch.ops.pyclr.swd_forward(h, p, w)
    x, y = h @ w, torch.sort(p @ w, dim=0).values
    rank = torch.argsort(torch.argsort(x, dim=0), dim=0)
    expected = x - torch.gather(y, 0, rank)
    assert residual.shape == (40, 4) and residual.dtype == torch.float64
    assert residual.stride() == (1, 40)  # the transpose of an (L, M) buffer, as the fake says
    torch.testing.assert_close(residual, expected, rtol=0, atol=1e-14)
    torch.testing.assert_close(loss, expected.pow(2).mean(), rtol=1e-14, atol=0)


def test_ties_in_any_order(device):
    # 30 copies of 10 rows: the loss does not depend on how ties are ranked, nor does the
    # gradient summed over each group of tied rows (they share the same prior values)
    gen = torch.Generator().manual_seed(6)
    h = torch.randn(10, 8, generator=gen).repeat(30, 1).to(device)
    p = sample_prior("gaussian", 300, 8, gen).to(device)
    w = random_projections(8, 8, gen).to(device)
    exact = loss_and_grad(reference.sliced_wasserstein, h.double(), p.double(), w.double())
    fused = loss_and_grad(sliced_wasserstein, h, p, w)
    torch.testing.assert_close(fused[0].double(), exact[0], rtol=1e-5, atol=0)
    torch.testing.assert_close(group_sum(fused[1]), group_sum(exact[1]), rtol=1e-4, atol=1e-8)


def group_sum(grad):
    return grad.double().reshape(30, 10, -1).sum(0)


def test_cpu_sort_order_of_special_values():
    """Zeros of both signs, subnormals and values across exponents rank in their order (the CPU
    kernel radix-sorts the bits of fp32 values). With d = 1, W = 1 and the prior 0..M-1, the
    residual x_i - rank_i gives each row's rank back."""
    special = [-1000.0, -3.5, -1.0, -1e-20, -1e-38, -1e-40, -1e-45, -0.0, 0.0, 1e-45, 1e-40,
               1e-38, 1e-20, 0.25, 1.0, 7.0, 999.0, 2.0**-126, -(2.0**-126)]
    gen = torch.Generator().manual_seed(0)
    x = torch.tensor(special)[torch.randperm(len(special), generator=gen)]
    m = len(special)
    prior = torch.arange(m, dtype=torch.float32)[torch.randperm(m, generator=gen)]
    _, residual = torch.ops.pyclr.swd_forward(x[:, None], prior[:, None], torch.ones(1, 1))
    rank = (x.double() - residual[:, 0].double()).round().long()
    assert sorted(rank.tolist()) == list(range(m))
    in_rank_order = x[torch.argsort(rank)]
    assert (in_rank_order[1:] >= in_rank_order[:-1]).all(), in_rank_order


def test_identical_samples_give_zero(device):
    h, _, w = problem(100, 12, 6, "gaussian", torch.float32, device, seed=2)
    shuffled = h[torch.randperm(100, generator=torch.Generator().manual_seed(0))]
    assert sliced_wasserstein(h, shuffled, w).item() < 1e-12  # rounding of the products only
    assert sliced_wasserstein(h, shuffled + 0.01, w).item() > 1e-5


def test_one_row(device):
    h, p, w = problem(1, 5, 3, "hypersphere", torch.float32, device, seed=3)
    loss, grad = loss_and_grad(sliced_wasserstein, h, p, w)
    expected = ((h.double() @ w.double() - p.double() @ w.double()) ** 2).mean()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-6, atol=0)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("where", ["h", "prior_samples"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_input_gives_non_finite_loss(device, where, value):
    h, p, w = problem(64, 8, 8, "gaussian", torch.float32, device, seed=12)
    (h if where == "h" else p)[5, 2] = value
    loss, grad = loss_and_grad(sliced_wasserstein, h, p, w)
    if value != value:  # NaN sorts last and stays NaN
        assert torch.isnan(loss)
    else:
        assert not torch.isfinite(loss)
    assert grad.shape == h.shape


@pytest.mark.parametrize("nan", ["negative", "inf - inf"])
@pytest.mark.parametrize("where", ["h", "prior_samples"])
def test_nan_with_the_sign_bit_sorts_last(device, where, nan):
    # a NaN whose sign bit is set (x86 makes inf - inf so, inside h @ W) sorted first in the
    # float32 kernels, before -inf: every other row of its projection met the wrong prior rank,
    # so their gradients differed from the reference's (torch.sort puts every NaN last)
    h, p, w = problem(16, 4, 4, "gaussian", torch.float32, device, seed=7)
    bad = h if where == "h" else p
    if nan == "negative":
        bad[3] = -float("nan")
        assert torch.signbit(bad[3]).all()
    else:
        bad[3, :2] = torch.tensor([float("inf"), -float("inf")])
        w = torch.linalg.qr(torch.ones(4, 4, device=device).tril())[0]  # mixes columns 0 and 1
    loss, grad = loss_and_grad(sliced_wasserstein, h, p, w)
    expected_loss, expected = loss_and_grad(reference.sliced_wasserstein, h.double(), p.double(), w.double())
    assert torch.isnan(loss) and torch.isnan(expected_loss)
    assert torch.isfinite(expected).sum() >= 8 * 4  # the rows a NaN does not reach
    torch.testing.assert_close(grad.double(), expected, rtol=1e-4, atol=1e-6, equal_nan=True)


@pytest.mark.not_emulated("opcheck and torch.compile of torch.ops.pyclr itself")
def test_opcheck(device):
    h, p, w = problem(20, 6, 4, "gaussian", torch.float32, device, seed=1)
    torch.library.opcheck(torch.ops.pyclr.swd_forward.default, (h.requires_grad_(), p, w))
    torch.library.opcheck(torch.ops.pyclr.swd_forward.default, (h.detach().bfloat16().requires_grad_(), p, w))
    if device.type == "cpu":
        torch.library.opcheck(torch.ops.pyclr.swd_forward.default, (h.detach().double().requires_grad_(), p, w))


@pytest.mark.not_emulated("opcheck and torch.compile of torch.ops.pyclr itself")
def test_torch_compile_op(device):
    # The op and its backward trace into one graph (the fake kernel, strides included).
    # sliced_wasserstein itself breaks the graph: check_orthonormal_columns reads |W^T W - I| on the host.
    h, p, w = problem(64, 8, 8, "gaussian", torch.float32, device, seed=5)

    def loss(h):
        return torch.ops.pyclr.swd_forward(h, p, w)[0] * 3

    eager = loss_and_grad(lambda x, _p, _w: loss(x), h, p, w)
    compiled = loss_and_grad(lambda x, _p, _w: torch.compile(loss, fullgraph=True)(x), h, p, w)
    torch.testing.assert_close(compiled, eager)


# --- bad input: a clear error naming the argument, before any kernel runs ---

def good():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen), random_projections(3, 2, gen)


H, P, W = good()


@pytest.mark.parametrize("fn", [sliced_wasserstein, reference.sliced_wasserstein])
@pytest.mark.parametrize(
    "h,p,w,error,match",
    [
        (torch.randn(4), P, W, ValueError, r"h: expected a non-empty 2-D"),
        (torch.randn(4, 3, 1), P, W, ValueError, r"h: expected a non-empty 2-D"),
        (torch.randn(0, 3), P[:0], W, ValueError, r"h: expected a non-empty 2-D"),
        ([[1.0]], P, W, TypeError, r"h: expected a torch.Tensor"),
        (torch.ones(4, 3, dtype=torch.int64), P, W, TypeError, r"h: expected a floating-point"),
        (H, torch.randn(5, 3), W, ValueError, r"prior_samples: expected shape \(4, 3\)"),
        (H, torch.randn(4, 2), W, ValueError, r"prior_samples: expected shape \(4, 3\)"),
        (H, P.long(), W, TypeError, r"prior_samples: expected a floating-point"),
        (H, P, torch.eye(4)[:, :2], ValueError, r"projections: expected shape \(d, L\) with d = 3"),
        (H, P, torch.eye(4)[:3, :], ValueError, r"projections: expected shape \(d, L\)"),
        (H, P, W[0], ValueError, r"projections: expected shape \(d, L\)"),
        (H, P, 2 * W, ValueError, r"projections: expected orthonormal columns"),
        (H, P, torch.full((3, 2), float("nan")), ValueError, r"projections: expected orthonormal"),
        (H, P, W.clone().requires_grad_(), ValueError, r"projections: expected a tensor that does not require grad"),
        (H, P.to("meta"), W, ValueError, r"prior_samples: expected device cpu"),
    ],
)
def test_bad_input(fn, h, p, w, error, match):
    with pytest.raises(error, match=match):
        fn(h, p, w)


@pytest.mark.parametrize("fn", [reference.sliced_wasserstein, sliced_wasserstein])
def test_check_orthonormal_must_be_a_bool(fn):
    with pytest.raises(TypeError, match="check_orthonormal: expected a bool, got 'no'"):
        fn(H, P, 2 * W, check_orthonormal="no")  # "no" was truthy: checked, and 2W refused


def test_bad_input_fused_only():
    with pytest.raises(TypeError, match=r"h: expected dtype float32, bfloat16, float16 \(or float64 on the CPU\), got torch.float8_e4m3fn"):
        sliced_wasserstein(H.to(torch.float8_e4m3fn), P, W)
    with pytest.raises(ValueError, match="prior_samples: expected a tensor that does not require grad"):
        sliced_wasserstein(H, P.clone().requires_grad_(), W)
    # the CUDA kernel takes no float64 (checked without touching a device)
    with pytest.raises(TypeError, match=r"h: expected dtype .*float64 on the CPU\), got torch.float64"):
        check_kernel_dtype("h", torch.empty(4, 3, dtype=torch.float64, device="meta"))


@pytest.mark.parametrize(
    "h,p,w,match",
    [
        (torch.randn(4), P, W, r"h: expected a 2-D tensor"),
        (torch.randn(0, 3), P[:0], W, r"h: expected a non-empty matrix"),
        (H.long(), P, W, r"h: expected dtype float32, bfloat16 or float16 \(or float64 on the CPU\), got Long"),
        (H, torch.randn(5, 3), W, r"prior_samples: expected shape \[4, 3\] \(that of h\), got \[5, 3\]"),
        (H, P.long(), W, r"prior_samples: expected a floating-point tensor, got Long"),
        (H, P, torch.randn(4, 2), r"projections: expected shape \(d, L\) with d = 3 .* got \[4, 2\]"),
        (H, P, torch.randn(3, 0), r"projections: expected shape \(d, L\) with d = 3"),
        (H, P, W.int(), r"projections: expected a floating-point tensor, got Int"),
    ],
)
def test_op_boundary_checks(h, p, w, match):
    with pytest.raises(RuntimeError, match=match):
        torch.ops.pyclr.swd_forward(h, p, w)


def test_missing_kernel_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_ops, "has_kernel", lambda op, device_type: op != "swd_forward")
    with pytest.raises(RuntimeError, match="pyclr::swd_forward has no kernel for device cpu"):
        sliced_wasserstein(H, P, W)


def test_projections_on_another_device_are_named_before_they_are_read():
    # the orthonormality check read the meta projections back first: "Tensor.item() cannot be
    # called on meta tensors"
    for fn in (sliced_wasserstein, reference.sliced_wasserstein):
        with pytest.raises(ValueError, match="projections: expected device cpu"):
            fn(torch.randn(6, 4), torch.randn(6, 4), torch.eye(4, device="meta"))
