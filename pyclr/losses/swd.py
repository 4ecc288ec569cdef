"""The squared sliced 2-Wasserstein distance on fused C++/CUDA kernels (SPEC.md section 2)."""
from __future__ import annotations

import torch

from .. import _ops
from ._checks import check_kernel_dtype
from .reference import check_swd_inputs


def sliced_wasserstein(h: torch.Tensor, prior_samples: torch.Tensor,
                       projections: torch.Tensor, check_orthonormal: bool = True) -> torch.Tensor:
    r"""The squared sliced 2-Wasserstein distance between the rows of ``h`` and of
    ``prior_samples`` along the columns of ``projections``.

    With :math:`X = h W` and :math:`Y = P W` (both ``(M, L)``), each column sorted on its own:

    .. math:: \mathrm{SWD}^2 = \frac{1}{M L} \sum_{l=1}^{L} \sum_{r=1}^{M}
              \left( X_{(r), l} - Y_{(r), l} \right)^2

    the mean over projections of the squared 2-Wasserstein distance between the two projected
    samples (POT's ``ot.sliced_wasserstein_distance(h, P, projections=W, p=2)`` is its square
    root). The gradient reaches ``h`` only: each row is pulled towards the prior value of its
    own rank in every projection, :math:`\partial L / \partial h = 2 R W^T / (M L)` with
    :math:`R_{il} = X_{il} - Y_{(\mathrm{rank}_l(i)), l}`.

    Args:
        h: ``(M, d)`` embeddings, float32, bfloat16 or float16 (float64 on the CPU); the
            projections and the loss are computed in float32 (float64 for float64 ``h``).
        prior_samples: ``(M, d)`` samples of the prior (:func:`pyclr.losses.priors.sample_prior`),
            any floating dtype, on ``h``'s device; they get no gradient, so they must not
            require one.
        projections: ``(d, L)`` with orthonormal columns and ``L <= d``
            (:func:`pyclr.losses.priors.random_projections`), any floating dtype, on ``h``'s
            device, not requiring grad.
        check_orthonormal: check W's columns (``|W^T W - I| <= 1e-3``, ``1e-2`` for a 16-bit
            W); that reads a value back from the device, so a caller that drew W itself may
            skip it.

    Returns:
        A 0-dim float32 tensor (float64 for float64 ``h``).

    Ties in a projection may be broken in any order: the loss does not depend on it. A NaN in
    ``h`` or ``prior_samples`` gives a NaN loss. Memory is O(M L): sorting needs the
    projections, and the backward keeps only the ``(M, L)`` residual (no permutation) and a
    reference to ``h``. Second derivatives (``create_graph=True``, ``torch.func.hessian``) and
    forward mode (``torch.func.jvp``, ``jacfwd``, along ``h``) are exact: the Hessian is
    :math:`2 W W^T / (M L)` on each row.
    """
    check_swd_inputs(h, prior_samples, projections, check_orthonormal)
    check_kernel_dtype("h", h)
    if prior_samples.requires_grad:
        raise ValueError("prior_samples: expected a tensor that does not require grad (the fused "
                         "loss gives no gradient for the prior samples; use "
                         "pyclr.losses.reference.sliced_wasserstein for one)")
    _ops.require_kernel("swd_forward", h.device)
    if _ops.compiling():  # dynamo traces no autograd.Function with a jvp: the bare op, its own link
        return torch.ops.pyclr.swd_forward(h, prior_samples, projections)[0]
    return _SlicedWasserstein.apply(h, prior_samples, projections)[0]


# --- operator registrations: autograd link and fake kernel (for torch.compile / opcheck) ---

def _acc_dtype(h: torch.Tensor) -> torch.dtype:
    return torch.float64 if h.dtype == torch.float64 else torch.float32


def _forward_fake(h, prior_samples, projections):
    m, num_proj = h.shape[0], projections.shape[1]
    loss = h.new_empty((), dtype=_acc_dtype(h))
    # csrc/swd/swd.h: the residual is the transpose of a contiguous (L, M) buffer
    residual = h.new_empty((num_proj, m), dtype=_acc_dtype(h)).t()
    return loss, residual


def _setup_context(ctx, inputs, output):
    h, _, projections = inputs
    _, residual = output
    # h only for create_graph=True (a reference: no copy, and the caller's graph usually holds it)
    ctx.save_for_backward(residual, projections, h)
    ctx.save_for_forward(residual, projections)
    ctx.h_dtype = h.dtype
    ctx.mark_non_differentiable(residual)


def _backward(ctx, grad_loss, _grad_residual):
    residual, projections, h = ctx.saved_tensors
    m, num_proj = residual.shape
    # d loss / d h = 2 R W^T / (M L)  (csrc/swd/swd.h), in the residual's dtype even when
    # backward() is called inside torch.autocast (as the forward's products are)
    with torch.autocast(residual.device.type, enabled=False):
        w = projections.to(residual.dtype)
        if torch.is_grad_enabled():
            # create_graph=True: R = h W - Y(rank), where the matched prior values Y are
            # constant almost everywhere, so d R / d h = W; the value stays the kernel's
            x = h.to(residual.dtype) @ w
            residual = residual + (x - x.detach())
        grad_h = (residual @ w.T) * (grad_loss * (2.0 / (m * num_proj)))
    return grad_h.to(ctx.h_dtype), None, None


class _SlicedWasserstein(torch.autograd.Function):
    """``torch.ops.pyclr.swd_forward`` as an autograd.Function with ``setup_context`` and a
    forward-mode derivative, so that torch.func transforms take it (the bare op's
    register_autograd link gives them none, pytorch#168393, and forward mode dropped the
    tangent); :func:`_backward` serves both."""

    generate_vmap_rule = True

    @staticmethod
    def forward(h, prior_samples, projections):
        return torch.ops.pyclr.swd_forward(h, prior_samples, projections)

    setup_context = staticmethod(_setup_context)
    backward = staticmethod(_backward)

    @staticmethod
    def jvp(ctx, h_tangent, _prior_tangent, _projections_tangent):
        # along h only: prior samples and projections are constants here, as in backward
        # (torch.func hands them zero tangents, which cannot be told from a real one here)
        residual, projections = ctx.saved_tensors
        m, num_proj = residual.shape
        with torch.autocast(residual.device.type, enabled=False):
            moved = h_tangent.to(residual.dtype) @ projections.to(residual.dtype)
            return (residual * moved).sum() * (2.0 / (m * num_proj)), None


if _ops.EXTENSION_LOADED:
    torch.library.register_fake("pyclr::swd_forward")(_forward_fake)
    torch.library.register_autograd("pyclr::swd_forward", _backward, setup_context=_setup_context)

__all__ = ["sliced_wasserstein"]
