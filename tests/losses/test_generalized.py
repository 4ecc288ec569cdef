"""The generalized contrastive loss (SPEC.md section 2): the fused logsumexp term against the
reference, the composed loss against the reference, the priors, the projections, bad input.
The sliced-Wasserstein kernel itself is tested in test_swd.py."""
import math

import pytest
import torch

import pyclr
from pyclr import _ops
from pyclr.losses import (GeneralizedContrastiveLoss, alignment, generalized_contrastive,
                          logsumexp_uniformity, random_projections, reference, sample_prior)

from ..conftest import ABS_FLOOR, max_error

PRIORS = ("hypersphere", "gaussian", "hypercube")


def rows(m, d, dtype, device, seed, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(m, d, generator=gen, dtype=torch.float64) * scale).to(device, dtype)


def value_and_grad(fn, *inputs):
    inputs = [x.detach().requires_grad_() for x in inputs]
    out = fn(*inputs)
    out.backward()
    return (out.detach(),) + tuple(x.grad for x in inputs)


def check_close(fused, same_dtype, exact, dtype):
    """Kernel error vs float64 at most 2x the reference's own error in the input dtype."""
    for i, (f, r, e) in enumerate(zip(fused, same_dtype, exact)):
        assert torch.isfinite(f).all(), f"output {i}"
        allowed = 2 * max_error(r, e) + ABS_FLOOR[dtype] * (1 + e.abs().max().item())
        assert max_error(f, e) <= allowed, f"output {i}: error {max_error(f, e):.3g} > {allowed:.3g}"


# --- the logsumexp uniformity term on the NT-Xent kernels (negatives mode kSelf) -------------

@pytest.mark.parametrize("m,d", [(2, 1), (2, 8), (6, 5), (66, 33), (602, 17), (1026, 64),
                                 pytest.param(2000, 256, marks=pytest.mark.not_emulated("a minute in the CUDA emulator"))])
def test_uniformity_matches_reference_shapes(device, m, d):
    z = torch.nn.functional.normalize(rows(m, d, torch.float32, device, seed=m + d), dim=1)
    exact = value_and_grad(reference.logsumexp_uniformity, z.double())
    fused = value_and_grad(logsumexp_uniformity, z)
    same = value_and_grad(reference.logsumexp_uniformity, z)
    check_close(fused, same, exact, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("temperature", [0.05, 0.5, 1.0, 4.0])
@pytest.mark.parametrize("normalized", [True, False])
def test_uniformity_matches_reference_options(device, dtype, temperature, normalized):
    z = rows(258, 96, torch.float32, device, seed=5, scale=1.0 if normalized else 0.3)
    if normalized:
        z = torch.nn.functional.normalize(z, dim=1)
    z = z.to(dtype)
    exact = value_and_grad(lambda x: reference.logsumexp_uniformity(x, temperature), z.double())
    fused = value_and_grad(lambda x: logsumexp_uniformity(x, temperature), z)
    same = value_and_grad(lambda x: reference.logsumexp_uniformity(x, temperature), z)
    assert fused[0].dtype == torch.float32 and fused[1].dtype == dtype
    check_close(fused, same, exact, dtype)


def test_uniformity_gradcheck_float64():
    z = rows(6, 4, torch.float64, "cpu", seed=2).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: logsumexp_uniformity(x, 0.7), (z,))


def test_uniformity_self_term_is_included():
    # two identical rows: each row's sum is 2 exp(|z|^2 / tau), the self term counted once
    z = torch.tensor([[0.6, 0.8], [0.6, 0.8]])
    assert logsumexp_uniformity(z, 0.5).item() == pytest.approx(math.log(2) + 1 / 0.5, rel=1e-6)


@pytest.mark.not_emulated("opcheck and torch.compile of torch.ops.pyclr itself")
def test_uniformity_opcheck():
    z = rows(8, 5, torch.float32, "cpu", seed=1).requires_grad_()
    torch.library.opcheck(torch.ops.pyclr.nt_xent_forward.default, (z, 0.5, 2, 0, 4))


def test_uniformity_odd_rows_error():
    with pytest.raises(ValueError, match="z: .*even number of rows"):
        logsumexp_uniformity(torch.randn(5, 3))
    # the reference takes any number of rows
    assert torch.isfinite(reference.logsumexp_uniformity(torch.randn(5, 3)))


# --- the composed loss -----------------------------------------------------------------------

def explicit_inputs(n, d, prior, device, seed, num_projections=None):
    gen = torch.Generator().manual_seed(seed)
    return (random_projections(d, num_projections, gen, device=device),
            sample_prior(prior, 2 * n, d, gen, device=device))


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_swd_loss_matches_reference(device, prior, dtype):
    n, d = 150, 32
    w, p = explicit_inputs(n, d, prior, device, seed=3, num_projections=24)
    z1, z2 = rows(n, d, dtype, device, seed=4), rows(n, d, dtype, device, seed=5)

    def loss(fn, a, b):
        return fn(a, b, prior=prior, lam=0.7, projections=w, prior_samples=p)

    exact = value_and_grad(lambda a, b: loss(reference.generalized_contrastive, a, b), z1.double(), z2.double())
    fused = value_and_grad(lambda a, b: loss(generalized_contrastive, a, b), z1, z2)
    same = value_and_grad(lambda a, b: loss(reference.generalized_contrastive, a, b), z1, z2)
    check_close(fused, same, exact, dtype)


@pytest.mark.parametrize("temperature", [0.2, 1.0])
def test_logsumexp_loss_matches_reference(device, temperature):
    z1, z2 = rows(200, 64, torch.float32, device, seed=6), rows(200, 64, torch.float32, device, seed=7)

    def loss(fn, a, b):
        return fn(a, b, distribution="logsumexp", lam=2.0, temperature=temperature)

    exact = value_and_grad(lambda a, b: loss(reference.generalized_contrastive, a, b), z1.double(), z2.double())
    fused = value_and_grad(lambda a, b: loss(generalized_contrastive, a, b), z1, z2)
    same = value_and_grad(lambda a, b: loss(reference.generalized_contrastive, a, b), z1, z2)
    check_close(fused, same, exact, torch.float32)


@pytest.mark.parametrize("prior,distribution", [(p, "swd") for p in PRIORS] + [("hypersphere", "logsumexp")])
def test_parts_add_up(prior, distribution):
    z1, z2 = rows(40, 8, torch.float32, "cpu", seed=8), rows(40, 8, torch.float32, "cpu", seed=9)
    gen = torch.Generator().manual_seed(0)
    parts = generalized_contrastive(z1, z2, prior, distribution, lam=0.3, generator=gen, return_parts=True)
    assert parts.total.item() == pytest.approx(parts.alignment.item() + 0.3 * parts.distribution.item(), rel=1e-6)
    assert parts.alignment.item() == pytest.approx(
        alignment(z1, z2, normalize=prior == "hypersphere").item(), rel=1e-6)
    # the same seed draws the same projections and prior samples: the same loss
    again = generalized_contrastive(z1, z2, prior, distribution, lam=0.3,
                                    generator=torch.Generator().manual_seed(0))
    assert again.item() == parts.total.item()


def test_alignment_formula():
    z1, z2 = rows(10, 6, torch.float64, "cpu", seed=10), rows(10, 6, torch.float64, "cpu", seed=11)
    raw = sum(((z1[i] - z2[i]) ** 2).sum() for i in range(10)) / (2 * 10 * 6)
    assert alignment(z1, z2, normalize=False).item() == pytest.approx(raw.item(), rel=1e-12)
    u1, u2 = z1 / z1.norm(dim=1, keepdim=True), z2 / z2.norm(dim=1, keepdim=True)
    assert alignment(z1, z2).item() == pytest.approx(((u1 - u2) ** 2).sum().item() / 120, rel=1e-12)


def test_module_matches_function():
    z1, z2 = rows(30, 8, torch.float32, "cpu", seed=12), rows(30, 8, torch.float32, "cpu", seed=13)
    module = GeneralizedContrastiveLoss(prior="gaussian", lam=0.5, num_projections=4,
                                        generator=torch.Generator().manual_seed(1))
    expected = generalized_contrastive(z1, z2, "gaussian", lam=0.5, num_projections=4,
                                       generator=torch.Generator().manual_seed(1))
    assert module(z1, z2).item() == expected.item()
    assert "gaussian" in repr(module)


def test_fresh_draws_differ_between_calls():
    z1, z2 = rows(30, 8, torch.float32, "cpu", seed=14), rows(30, 8, torch.float32, "cpu", seed=15)
    gen = torch.Generator().manual_seed(2)
    first = generalized_contrastive(z1, z2, "hypercube", generator=gen)
    second = generalized_contrastive(z1, z2, "hypercube", generator=gen)
    assert first.item() != second.item()


# --- priors and projections ------------------------------------------------------------------

def test_prior_moments_and_support():
    gen = torch.Generator().manual_seed(0)
    m, d = 200_000, 4
    sphere = sample_prior("hypersphere", m, d, gen)
    assert torch.allclose(sphere.norm(dim=1), torch.ones(m), atol=1e-5)
    assert sphere.mean(0).abs().max() < 0.01
    assert torch.allclose(sphere.pow(2).mean(0), torch.full((d,), 1 / d), atol=0.01)
    gauss = sample_prior("gaussian", m, d, gen)
    assert gauss.mean(0).abs().max() < 0.01 and (gauss.var(0) - 1).abs().max() < 0.02
    cube = sample_prior("hypercube", m, d, gen)
    assert cube.min() >= -1 and cube.max() <= 1
    assert cube.mean(0).abs().max() < 0.01 and (cube.var(0) - 1 / 3).abs().max() < 0.01


def test_prior_is_reproducible_and_device_independent():
    a = sample_prior("gaussian", 50, 3, torch.Generator().manual_seed(7))
    b = sample_prior("gaussian", 50, 3, torch.Generator().manual_seed(7), dtype=torch.float64)
    c = sample_prior("gaussian", 50, 3, torch.Generator().manual_seed(8))
    assert torch.equal(a, b.float()) and not torch.equal(a, c)
    if torch.cuda.is_available():
        on_gpu = sample_prior("gaussian", 50, 3, torch.Generator().manual_seed(7), device="cuda")
        assert torch.equal(on_gpu.cpu(), a)


@pytest.mark.parametrize("d,num", [(1, None), (5, 3), (64, None)])
def test_projections_orthonormal(d, num):
    w = random_projections(d, num, torch.Generator().manual_seed(d))
    assert w.shape == (d, num or d)
    assert torch.allclose(w.T @ w, torch.eye(num or d), atol=1e-5)


def test_projections_are_haar_distributed():
    # Without the sign correction QR's Q is not uniform: its entries' signs are biased.
    gen = torch.Generator().manual_seed(0)
    first = torch.stack([random_projections(3, generator=gen)[:, 0] for _ in range(4000)])
    assert first.mean(0).abs().max() < 0.04  # E[w] = 0 (std of the mean about 0.009)
    assert torch.allclose(first.pow(2).mean(0), torch.full((3,), 1 / 3), atol=0.03)


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,error,match", [
    ({"prior": "laplace"}, ValueError, "prior: expected one of"),
    ({"distribution": "mmd"}, ValueError, "distribution: expected one of"),
    ({"prior": "gaussian", "distribution": "logsumexp"}, ValueError, "uniform hypersphere only"),
    ({"lam": -1.0}, ValueError, "lam: expected a finite number >= 0"),
    ({"lam": float("nan")}, ValueError, "lam"),
    ({"temperature": 0.0}, ValueError, "temperature"),
    ({"num_projections": 0}, ValueError, "num_projections: expected an int >= 1"),
    ({"num_projections": 9}, ValueError, "num_projections: expected at most d = 8"),
    ({"num_projections": 2.5}, TypeError, "num_projections: expected an int"),
    ({"generator": 3}, TypeError, "generator: expected a torch.Generator"),
    ({"projections": torch.randn(8, 8)}, ValueError, "projections: expected orthonormal columns"),
    ({"projections": torch.eye(7)}, ValueError, r"projections: expected shape \(d, L\)"),
    ({"projections": torch.eye(8), "num_projections": 4}, ValueError, "num_projections: 4 disagrees"),
    ({"projections": torch.eye(8).requires_grad_()}, ValueError, "projections: expected a tensor that does not require grad"),
    ({"prior_samples": torch.randn(10, 8)}, ValueError, r"prior_samples: expected shape \(20, 8\)"),
    ({"return_parts": 1}, TypeError, "return_parts: expected a bool"),
])
@pytest.mark.parametrize("fn", [generalized_contrastive, reference.generalized_contrastive])
def test_bad_options(fn, kwargs, error, match):
    z1, z2 = torch.randn(10, 8), torch.randn(10, 8)
    with pytest.raises(error, match=match):
        fn(z1, z2, **kwargs)


def test_bad_views():
    with pytest.raises(ValueError, match="z1 and z2: expected the same shape"):
        generalized_contrastive(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(TypeError, match="z1: expected dtype"):
        generalized_contrastive(torch.randn(4, 3).int(), torch.randn(4, 3).int())
    with pytest.raises(ValueError, match="prior: expected one of"):
        GeneralizedContrastiveLoss(prior="sphere")
    with pytest.raises(TypeError, match="generator: expected a torch.Generator"):  # at construction,
        GeneralizedContrastiveLoss(generator=0)  # not at the first step


def test_sample_prior_bad_input():
    with pytest.raises(ValueError, match="prior: expected one of"):
        sample_prior("uniform", 3, 2)
    with pytest.raises(ValueError, match="m: expected an int >= 1"):
        sample_prior("gaussian", 0, 2)
    # an integer or bool dtype rounded the samples away (hypercube: all zeros)
    for dtype in (torch.int64, torch.bool, "float32"):
        with pytest.raises(TypeError, match="dtype: expected a floating-point torch.dtype"):
            sample_prior("hypercube", 3, 2, dtype=dtype)
        with pytest.raises(TypeError, match="dtype: expected a floating-point torch.dtype"):
            random_projections(3, dtype=dtype)

    with pytest.raises(ValueError, match="device: expected a device such as 'cpu'"):
        sample_prior("gaussian", 3, 2, device="nope")  # was torch's message, naming no argument
    with pytest.raises(ValueError, match="device: expected a device such as 'cpu'"):
        random_projections(3, device="nope")


def test_zero_embeddings_give_no_nan():
    z = torch.zeros(6, 4)
    for prior in PRIORS:
        assert torch.isfinite(generalized_contrastive(z, z, prior, generator=torch.Generator().manual_seed(0)))
    assert torch.isfinite(generalized_contrastive(z, z, distribution="logsumexp"))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fn", [generalized_contrastive, reference.generalized_contrastive,
                                pyclr.losses.nt_xent, reference.nt_xent, reference.alignment],
                         ids=["generalized", "generalized-reference", "nt_xent", "nt_xent-reference",
                              "alignment"])
def test_zero_row_in_half_precision_gives_no_nan(fn, dtype):
    # F.normalize's eps (1e-12) rounds to 0 in float16: a zero row was 0/0 = NaN there
    torch.manual_seed(0)
    z1, z2 = torch.randn(4, 8, dtype=dtype), torch.randn(4, 8, dtype=dtype)
    z1[0] = 0
    z1.requires_grad_()
    kwargs = {"generator": torch.Generator().manual_seed(0)} if "generalized" in fn.__qualname__ else {}
    loss = fn(z1, z2, **kwargs)
    loss.backward()
    assert torch.isfinite(loss)
    # the zero row's gradient is upstream / eps (F.normalize), beyond float16's range: inf, which
    # mixed-precision scalers skip; never NaN
    assert not z1.grad.isnan().any() and torch.isfinite(z1.grad[1:]).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("fn", [generalized_contrastive, reference.generalized_contrastive,
                                pyclr.losses.nt_xent, reference.nt_xent],
                         ids=["generalized", "generalized-reference", "nt_xent", "nt_xent-reference"])
def test_rows_whose_norm_overflows_keep_their_direction(fn, dtype):
    # ||z|| of a row of ~1e24s is inf in float32: normalising made it zeros (a changed loss and
    # zero gradients); it is the same unit vector as the row at scale 1 (2**80: exact in bf16)
    torch.manual_seed(0)
    z1, z2 = torch.randn(6, 8, dtype=dtype), torch.randn(6, 8, dtype=dtype)
    results = []
    for scale in (1.0, 2.0 ** 80):
        kwargs = {"generator": torch.Generator().manual_seed(0)} if "generalized" in fn.__qualname__ else {}
        a = (z1 * scale).requires_grad_()
        loss = fn(a, z2, **kwargs)
        loss.backward()
        results.append((loss, a.grad.float() * scale))
    (loss, grad), (big_loss, big_grad) = results
    assert torch.isfinite(big_loss) and big_grad.abs().max() > 0
    torch.testing.assert_close(big_loss, loss, rtol=2e-2 if dtype == torch.bfloat16 else 1e-5, atol=1e-5)
    torch.testing.assert_close(big_grad, grad, rtol=5e-2, atol=5e-2 * grad.abs().max().item())


@pytest.mark.skipif(not _ops.has_kernel("nt_xent_forward", "cpu"), reason="no CPU kernels")
def test_uniformity_kernel_boundary_rejects_bad_mode():
    with pytest.raises(RuntimeError, match="negatives: expected 0 \\(all\\), 1 \\(cross\\) or 2 \\(self\\)"):
        torch.ops.pyclr.nt_xent_forward(torch.randn(4, 3), 0.5, 3, 0, 2)


def test_orthonormality_check_can_be_skipped():
    h, p = torch.randn(10, 4), torch.randn(10, 4)
    skewed = torch.randn(4, 3)
    for fn in (reference.sliced_wasserstein, pyclr.losses.sliced_wasserstein):
        with pytest.raises(ValueError, match="projections: expected orthonormal columns"):
            fn(h, p, skewed)
        assert torch.isfinite(fn(h, p, skewed, check_orthonormal=False))


def test_float16_alignment_accumulates_in_float32():
    # the float16 sum of N d squared differences overflowed at 65504: an inf loss at 256 x 128
    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(256, 128, generator=gen), torch.randn(256, 128, generator=gen)
    expected = generalized_contrastive(z1, z2, prior="gaussian", return_parts=True,
                                       generator=torch.Generator().manual_seed(1))
    half = generalized_contrastive(z1.half(), z2.half(), prior="gaussian", return_parts=True,
                                   generator=torch.Generator().manual_seed(1))
    assert half.alignment.dtype == torch.float32 and torch.isfinite(half.total)
    torch.testing.assert_close(half.alignment, expected.alignment, rtol=2e-3, atol=0)


@pytest.mark.parametrize("prior,distribution", [("hypersphere", "swd"), ("gaussian", "swd"), ("hypercube", "swd"),
                                                ("hypersphere", "logsumexp")])
@pytest.mark.parametrize("fn", [generalized_contrastive, pyclr.losses.reference.generalized_contrastive])
def test_the_composed_loss_follows_spec_written_out(fn, prior, distribution):
    # the fused loss and the reference share the composition: a distribution term fed one view
    # twice, or a temperature left out, passed every comparison of the one with the other.
    # SPEC.md section 2, written out in float64 from the formulas
    gen = torch.Generator().manual_seed(3)
    z1, z2 = (torch.randn(10, 6, generator=gen, dtype=torch.float64) for _ in range(2))
    w = random_projections(6, 4, gen, dtype=torch.float64)
    p = sample_prior(prior, 20, 6, gen, dtype=torch.float64)
    h1, h2 = (torch.nn.functional.normalize(z, dim=1) if prior == "hypersphere" else z for z in (z1, z2))
    h = torch.cat([h1, h2])
    align = ((h1 - h2) ** 2).sum() / (2 * 10 * 6)
    if distribution == "logsumexp":
        dist = torch.logsumexp(h @ h.T / 0.3, dim=1).mean()
    else:
        dist = ((torch.sort(h @ w, dim=0).values - torch.sort(p @ w, dim=0).values) ** 2).sum() / (20 * 4)
    options = dict(prior=prior, distribution=distribution, lam=0.7, return_parts=True)
    options |= {"temperature": 0.3} if distribution == "logsumexp" else {"projections": w, "prior_samples": p}
    parts = fn(z1, z2, **options)
    torch.testing.assert_close(parts.alignment, align)
    torch.testing.assert_close(parts.distribution, dist)
    torch.testing.assert_close(parts.total, align + 0.7 * dist)
