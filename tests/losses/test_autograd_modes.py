"""The fused losses under every way torch differentiates: second derivatives (create_graph=True),
torch.func transforms and forward mode, against the plain-PyTorch references."""
import pytest
import torch

import pyclr.losses.ntxent as ntxent_module
from pyclr.losses import (generalized_contrastive, logsumexp_uniformity, nt_xent, reference,
                          sliced_wasserstein)
from pyclr.losses.priors import random_projections, sample_prior

from ..conftest import TORCH_VERSION


def pair(n=5, d=4, seed=0, dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    z1, z2 = (torch.randn(n, d, generator=gen, dtype=torch.float64).to(device, dtype) for _ in range(2))
    return z1, z2


def swd_problem(m=10, d=4, num_proj=3, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    w = random_projections(d, num_proj, gen, dtype=dtype)
    return torch.randn(m, d, generator=gen, dtype=dtype), sample_prior("gaussian", m, d, gen, dtype=dtype), w


def hvp(fn, args, v):
    """d/dx <grad_x fn(x, *rest), v> through create_graph=True, for x = args[0]."""
    x = args[0].detach().requires_grad_()
    grad, = torch.autograd.grad(fn(x, *args[1:]), x, create_graph=True)
    return torch.autograd.grad((grad * v).sum(), x)[0]


def nt_xent_cases():
    for negatives in ("all", "cross"):
        for normalize in (True, False):
            for reduction in ("mean", "none"):
                yield negatives, normalize, reduction


@pytest.mark.parametrize("negatives,normalize,reduction", list(nt_xent_cases()))
def test_nt_xent_second_derivative_matches_reference(negatives, normalize, reduction):
    z1, z2 = pair()
    options = dict(temperature=0.7, normalize=normalize, negatives=negatives)
    weights = torch.randn(10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def scalar(fn):  # a weighted sum covers reduction="none"
        return lambda a, b: (fn(a, b, reduction=reduction, **options) * (weights if reduction == "none" else 1)).sum()

    v = torch.randn_like(z1)
    for args in ((z1, z2), (z2, z1)):
        torch.testing.assert_close(hvp(scalar(nt_xent), args, v), hvp(scalar(reference.nt_xent), args, v))
    a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    assert torch.autograd.gradgradcheck(lambda x, y: nt_xent(x, y, reduction="none", **options), (a, b))


def test_uniformity_and_generalized_second_derivatives_match_reference():
    z1, z2 = pair(n=4, d=5, seed=2)
    v = torch.randn_like(z1)
    z = torch.cat([z1, z2])
    torch.testing.assert_close(hvp(lambda x: logsumexp_uniformity(x, 0.5), (z,), torch.cat([v, v])),
                               hvp(lambda x: reference.logsumexp_uniformity(x, 0.5), (z,), torch.cat([v, v])))
    w = random_projections(5, 4, torch.Generator().manual_seed(3), dtype=torch.float64)
    for prior in ("hypersphere", "gaussian"):
        p = sample_prior(prior, 8, 5, torch.Generator().manual_seed(4), dtype=torch.float64)
        for distribution in ("swd", "logsumexp") if prior == "hypersphere" else ("swd",):
            options = dict(prior=prior, distribution=distribution, projections=w, prior_samples=p, lam=2.0)
            torch.testing.assert_close(
                hvp(lambda a, b: generalized_contrastive(a, b, **options), (z1, z2), v),
                hvp(lambda a, b: reference.generalized_contrastive(a, b, **options), (z1, z2), v))


def test_sliced_wasserstein_second_derivative_is_exact():
    h, p, w = swd_problem()
    v = torch.randn_like(h)
    fused = hvp(lambda x: sliced_wasserstein(x, p, w), (h,), v)
    torch.testing.assert_close(fused, hvp(lambda x: reference.sliced_wasserstein(x, p, w), (h,), v))
    # the Hessian is 2 W W^T / (M L) on every row: a check that does not lean on the reference
    torch.testing.assert_close(fused, v @ w @ w.T * (2 / (10 * 3)))


def test_first_order_gradients_keep_the_fused_kernels(monkeypatch):
    # the plain O(M^2) recomputation serves create_graph=True only: an ordinary backward (and
    # one inside torch.enable_grad()) must stay on the fused kernels
    def refuse(*args):
        raise AssertionError("plain recomputation used for a first-order gradient")

    monkeypatch.setattr(ntxent_module, "_plain_backward", refuse)
    z1, z2 = (z.requires_grad_() for z in pair(dtype=torch.float32))
    with torch.enable_grad():
        nt_xent(z1, z2).backward()
        logsumexp_uniformity(torch.cat([z1, z2]), 0.5).backward()
    assert z1.grad is not None
    with pytest.raises(AssertionError, match="plain recomputation"):
        torch.autograd.grad(nt_xent(z1, z2), z1, create_graph=True)


def test_create_graph_gives_the_same_first_order_gradient():
    z1, z2 = (z.requires_grad_() for z in pair(n=6, d=5, seed=5, dtype=torch.float32))
    fused, = torch.autograd.grad(nt_xent(z1, z2, 0.3), z1)
    plain, = torch.autograd.grad(nt_xent(z1, z2, 0.3), z1, create_graph=True)
    torch.testing.assert_close(plain, fused)
    assert plain.requires_grad


def test_torch_func_grad_and_jacrev():
    z1, z2 = pair()
    grad = torch.func.grad(lambda a: nt_xent(a, z2, 0.4))(z1)
    torch.testing.assert_close(grad, torch.func.grad(lambda a: reference.nt_xent(a, z2, 0.4))(z1))
    jac = torch.func.jacrev(lambda a: nt_xent(a, z2, 0.4, reduction="none"))(z1)
    torch.testing.assert_close(jac, torch.func.jacrev(lambda a: reference.nt_xent(a, z2, 0.4, reduction="none"))(z1))
    h, p, w = swd_problem()
    torch.testing.assert_close(torch.func.grad(lambda x: sliced_wasserstein(x, p, w))(h),
                               torch.func.grad(lambda x: reference.sliced_wasserstein(x, p, w))(h))
    hessian = torch.func.hessian(lambda x: sliced_wasserstein(x, p, w))(h)  # (M, d, M, d)
    torch.testing.assert_close(hessian, torch.func.hessian(lambda x: reference.sliced_wasserstein(x, p, w))(h))


@pytest.mark.parametrize("negatives,normalize", [("all", True), ("cross", False)])
def test_forward_mode_nt_xent_matches_reference(negatives, normalize):
    # the bare op's register_autograd link dropped the tangent: jvp gave 0 without a word
    z1, z2 = pair()
    tangent = torch.randn_like(z1)
    options = dict(temperature=0.6, negatives=negatives, normalize=normalize)
    for reduction in ("mean", "none"):
        fused = torch.func.jvp(lambda a: nt_xent(a, z2, reduction=reduction, **options), (z1,), (tangent,))[1]
        plain = torch.func.jvp(lambda a: reference.nt_xent(a, z2, reduction=reduction, **options), (z1,), (tangent,))[1]
        torch.testing.assert_close(fused, plain)
    import torch.autograd.forward_ad as fwad
    with fwad.dual_level():
        fused = fwad.unpack_dual(nt_xent(fwad.make_dual(z1, tangent), z2, **options)).tangent
    torch.testing.assert_close(fused, torch.func.jvp(lambda a: reference.nt_xent(a, z2, **options), (z1,), (tangent,))[1])
    z = torch.cat([z1, z2])
    torch.testing.assert_close(
        torch.func.jvp(lambda x: logsumexp_uniformity(x, 0.5), (z,), (torch.cat([tangent, tangent]),))[1],
        torch.func.jvp(lambda x: reference.logsumexp_uniformity(x, 0.5), (z,), (torch.cat([tangent, tangent]),))[1])


def test_hessian_of_nt_xent_matches_reference():
    # torch.func.hessian is jacfwd(jacrev(f)): forward mode over the backward
    z1, z2 = pair(n=3, d=3)
    for negatives in ("all", "cross"):
        fused = torch.func.hessian(lambda a: nt_xent(a, z2, 0.5, negatives=negatives))(z1)
        plain = torch.func.hessian(lambda a: reference.nt_xent(a, z2, 0.5, negatives=negatives))(z1)
        torch.testing.assert_close(fused, plain)


def test_plain_paths_ignore_autocast():
    # create_graph=True inside autocast: the plain recomputation runs in fp32, as the kernels do
    z1, z2 = (z.requires_grad_() for z in pair(n=6, d=5, seed=5, dtype=torch.float32))
    fused, = torch.autograd.grad(nt_xent(z1, z2, 0.3), z1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain, = torch.autograd.grad(nt_xent(z1, z2, 0.3), z1, create_graph=True)
    torch.testing.assert_close(plain, fused)


@pytest.mark.skipif(TORCH_VERSION < (2, 1), reason="torch.func.jvp of autograd.Function")
def test_forward_mode_sliced_wasserstein_matches_reference():
    h, p, w = swd_problem()
    tangent = torch.randn_like(h)
    _, fused = torch.func.jvp(lambda x: sliced_wasserstein(x, p, w), (h,), (tangent,))
    _, plain = torch.func.jvp(lambda x: reference.sliced_wasserstein(x, p, w), (h,), (tangent,))
    torch.testing.assert_close(fused, plain)
    torch.testing.assert_close(torch.func.jacfwd(lambda x: sliced_wasserstein(x, p, w))(h),
                               torch.func.grad(lambda x: sliced_wasserstein(x, p, w))(h))


@pytest.mark.parametrize("normalize", [True, False])
def test_vmap_over_problems_matches_a_loop(normalize):
    # normalize=False: its logit-range check reads a value back, which vmap refuses (it is skipped there)
    z1, z2 = (torch.stack(v) for v in zip(*(pair(n=4, d=3, seed=s) for s in range(3))))
    with pytest.warns(UserWarning, match="fallback|performance"):
        batched = torch.vmap(lambda a, b: nt_xent(a, b, 0.5, normalize=normalize))(z1, z2)
    torch.testing.assert_close(batched, torch.stack([nt_xent(a, b, 0.5, normalize=normalize)
                                                     for a, b in zip(z1, z2)]))


@pytest.mark.not_emulated("torch.compile of torch.ops.pyclr itself")
def test_compiled_backward_keeps_the_fused_kernels(monkeypatch):
    def refuse(*args):
        raise AssertionError("plain recomputation used for a first-order gradient")

    monkeypatch.setattr(ntxent_module, "_plain_backward", refuse)
    torch._dynamo.reset()
    z1, z2 = (z.requires_grad_() for z in pair(n=8, d=4, dtype=torch.float32))
    compiled = torch.compile(lambda a, b: nt_xent(a, b, 0.5) + logsumexp_uniformity(torch.cat([a, b])),
                             fullgraph=True)
    compiled(z1, z2).backward()
    expected = torch.autograd.grad(nt_xent(z1, z2, 0.5) + logsumexp_uniformity(torch.cat([z1, z2])), z1)[0]
    torch.testing.assert_close(z1.grad, expected)
