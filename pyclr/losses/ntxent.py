"""NT-Xent, the SimCLR loss, on fused C++/CUDA kernels that never build the M x M matrix."""
from __future__ import annotations

import torch
from torch import nn

from .. import _ops
from ._gather import gather_views
from ._checks import check_logit_range, check_views
from .priors import normalize_rows
from .reference import NEGATIVES, REDUCTIONS, check_nt_xent_options

_NEGATIVES_CODE = {"all": 0, "cross": 1}  # csrc/ntxent/ntxent.h: kAll, kCross


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5, normalize: bool = True,
            negatives: str = "all", reduction: str = "mean",
            gather_distributed: bool = False) -> torch.Tensor:
    r"""The normalised temperature-scaled cross-entropy loss of SimCLR.

    With :math:`Z = [z_1; z_2]` (``M = 2N`` rows), :math:`\tilde z = z / \max(\|z\|, \epsilon)`,
    :math:`s_{ik} = \tilde z_i \cdot \tilde z_k / \tau` and the positive :math:`p(i) = (i + N) \bmod M`:

    .. math:: \ell_i = -s_{i,p(i)} + \log \sum_{k \ne i} \exp(s_{ik}), \qquad L = \frac{1}{M} \sum_i \ell_i

    Args:
        z1, z2: the two views' embeddings, ``(N, d)``, float32, bfloat16 or float16 (float64 on
            the CPU); the loss is computed with fp32 accumulation and returned in float32
            (float64 for float64 inputs).
        temperature: :math:`\tau`, in [1e-3, 1e6] (``pyclr.losses._checks.TEMPERATURE_RANGE``:
            where the kernels are tested against float64).
        normalize: l2-normalise the rows first (``False``: the paper's "no l2 norm" ablation).
        negatives: ``"all"`` (every other row of both views) or ``"cross"`` (only the other
            view's rows, the positive included: the symmetric two-way cross-entropy over
            :math:`z_1 z_2^T`).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-row losses, ``(2N,)``, rows of
            ``z1`` first).
        gather_distributed: take negatives from every rank of the initialised process group
            (all-gather with a gradient; its gradient of the gradient and its forward mode cross
            ranks too); each rank's loss covers its own rows.

    The M x M similarity matrix is never stored: memory is O(M d), so batches far beyond what
    :func:`pyclr.losses.reference.nt_xent` fits run.

    Derivatives: ``backward()`` runs the fused backward kernel. A gradient that must itself be
    differentiated (``create_graph=True``: gradient penalties, Hessian-vector products; and
    ``torch.func.grad``/``jacrev``/``hessian``, which always ask for it) is recomputed in plain
    PyTorch from the (2N, M) softmax: exact, O(M^2) memory like the reference; so is
    forward mode (``torch.func.jvp``, ``jacfwd``).

    On CUDA, float32 inputs meet the tensor cores as three TF32 products each (3xTF32, about
    fp32's accuracy); when torch allows TF32 for float32 matrix products
    (``torch.set_float32_matmul_precision("high")``, or for CUDA alone
    ``torch.backends.cuda.matmul.fp32_precision = "tf32"``, ``allow_tf32 = True`` before torch
    2.9) they take one, as ``torch.mm`` does: faster, with TF32's 11 significant bits. The
    setting is read when each kernel runs (a backward reads it again); bfloat16/float16 inputs
    are not affected. The CPU kernels' products are ``torch.mm``'s, which follow torch's CPU
    matmul precision. Each row's positive score is read from the same products as its
    log-sum-exp, so a row loses at least 0 however large the logits (``normalize=False``),
    as long as they stay finite in the accumulator: with ``normalize=False`` rows whose norm
    could take a logit past float32's range (``max ||z||^2 / tau`` beyond ``3.4e38 / (4M)``,
    float64's for float64 inputs) raise ValueError instead of giving a NaN loss. That check
    reads the largest norm back from the device (a sync on a GPU); it is skipped under
    ``torch.compile``, ``torch.vmap`` and for fake tensors.
    """
    check_views(z1, z2, kernel=True)
    temperature = check_nt_xent_options(temperature, normalize, negatives, reduction,
                                        gather_distributed)
    _ops.require_kernel("nt_xent_forward", z1.device)
    n = z1.shape[0]
    if normalize:
        z1, z2 = normalize_rows(z1), normalize_rows(z2)
    all1, all2, offset = gather_views(z1, z2) if gather_distributed else (z1, z2, 0)
    z = torch.cat([all1, all2])
    if not normalize and _ops.values_readable(z):
        check_logit_range(z, temperature)
    loss = nt_xent_rows(z, temperature, _NEGATIVES_CODE[negatives], offset, n)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


class NTXentLoss(nn.Module):
    """Module form of :func:`nt_xent`; options are checked here, once."""

    def __init__(self, temperature: float = 0.5, normalize: bool = True, negatives: str = "all",
                 reduction: str = "mean", gather_distributed: bool = False):
        super().__init__()
        self.temperature = check_nt_xent_options(temperature, normalize, negatives, reduction,
                                                 gather_distributed)
        self.normalize = bool(normalize)  # checked: a bool, numpy's included
        self.negatives = negatives
        self.reduction = reduction
        self.gather_distributed = bool(gather_distributed)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return nt_xent(z1, z2, self.temperature, self.normalize, self.negatives, self.reduction,
                       self.gather_distributed)

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, normalize={self.normalize}, "
                f"negatives={self.negatives!r}, reduction={self.reduction!r}, "
                f"gather_distributed={self.gather_distributed}")


def nt_xent_rows(z: torch.Tensor, temperature: float, negatives: int, anchor_offset: int,
                 anchor_count: int) -> torch.Tensor:
    """The per-row losses of ``torch.ops.pyclr.nt_xent_forward`` (csrc/ntxent/ntxent.h: ``z`` the
    two views stacked, anchors ``anchor_count`` rows from ``anchor_offset`` of each half,
    ``negatives`` 0 all, 1 cross, 2 self), differentiable in every way torch offers: see
    :class:`_NTXentRows`. Arguments are the callers' to check."""
    if _ops.compiling():  # dynamo traces no autograd.Function with a jvp: the bare op, its own link
        return torch.ops.pyclr.nt_xent_forward(z, temperature, negatives, anchor_offset, anchor_count)[0]
    return _NTXentRows.apply(z, temperature, negatives, anchor_offset, anchor_count)[0]


# --- operator registrations: autograd link and fake kernels (for torch.compile / opcheck) ---

def _acc_dtype(z: torch.Tensor) -> torch.dtype:
    return torch.float64 if z.dtype == torch.float64 else torch.float32


def _forward_fake(z, temperature, negatives, anchor_offset, anchor_count):
    shape = (2 * anchor_count,)
    return z.new_empty(shape, dtype=_acc_dtype(z)), z.new_empty(shape, dtype=_acc_dtype(z))


def _backward_fake(grad_loss, z, lse, temperature, negatives, anchor_offset, anchor_count):
    return z.new_empty(z.shape)  # contiguous, as the kernels return it, whatever z's strides


def _setup_context(ctx, inputs, output):
    z, temperature, negatives, anchor_offset, anchor_count = inputs
    _, lse = output
    ctx.save_for_backward(z, lse)
    ctx.args = (temperature, negatives, anchor_offset, anchor_count)
    ctx.mark_non_differentiable(lse)


def _backward(ctx, grad_loss, _grad_lse):
    z, lse = ctx.saved_tensors
    if torch.is_grad_enabled() and (z.requires_grad or grad_loss.requires_grad):
        # create_graph=True (also torch.func.grad, which always asks for it): the gradient must
        # itself be differentiable, and the fused backward has no derivative of its own, so it
        # is recomputed in plain PyTorch (exact; O(M^2) memory, like the reference)
        return _plain_backward(grad_loss, z, *ctx.args), None, None, None, None
    grad_z = torch.ops.pyclr.nt_xent_backward(grad_loss.contiguous(), z, lse, *ctx.args)
    return grad_z, None, None, None, None


def _plain_softmax(work, temperature, negatives, anchor_offset, anchor_count):
    """``(P, anchors, positives)``: the (2 count, M) softmax of each anchor's logits over its
    columns (csrc/ntxent/ntxent.h), in plain differentiable PyTorch; positives is None for
    kSelf."""
    n_all = work.shape[0] // 2
    local = torch.arange(anchor_count, device=work.device) + anchor_offset
    anchors = torch.cat([local, local + n_all])
    logits = work[anchors] @ work.T / temperature
    columns = torch.arange(work.shape[0], device=work.device)
    if negatives == 0:  # all: every column but the row's own
        excluded = columns[None, :] == anchors[:, None]
    elif negatives == 1:  # cross: the other view's columns only
        excluded = (columns[None, :] >= n_all) == (anchors[:, None] >= n_all)
    else:  # self: every column, and no positive
        excluded = None
    if excluded is not None:
        logits = logits.masked_fill(excluded, float("-inf"))
    positives = torch.cat([local + n_all, local]) if negatives != 2 else None
    return torch.softmax(logits, dim=1), anchors, positives


def _plain_backward(grad_loss, z, temperature, negatives, anchor_offset, anchor_count):
    """The fused backward's gradient in plain, differentiable PyTorch: A = g (P - onehot(positive))
    / tau over each anchor's columns, then dL/dz = A^T z_anchors plus A z added at the anchors'
    own rows. Outside autocast, as the kernels are."""
    with torch.autocast(z.device.type, enabled=False):
        work = z.to(_acc_dtype(z))
        weights, anchors, positives = _plain_softmax(work, temperature, negatives, anchor_offset, anchor_count)
        if positives is not None:
            rows = torch.arange(len(anchors), device=z.device)
            weights = weights.index_put((rows, positives), weights[rows, positives] - 1)
        weights = weights * (grad_loss.to(weights.dtype) / temperature)[:, None]
        grad = (weights.T @ work[anchors]).index_add(0, anchors, weights @ work)
    return grad.to(z.dtype)


def _plain_jvp(z, tangent, temperature, negatives, anchor_offset, anchor_count):
    """The per-row losses' forward-mode derivative in plain PyTorch (O(M^2), as the reference):
    dL_a = sum_k P_ak dS_ak - dS_a,positive, dS = (dz_a . z_k + z_a . dz_k) / tau."""
    with torch.autocast(z.device.type, enabled=False):
        work = z.to(_acc_dtype(z))
        moved = tangent.to(work.dtype)
        weights, anchors, positives = _plain_softmax(work, temperature, negatives, anchor_offset, anchor_count)
        d_logits = (moved[anchors] @ work.T + work[anchors] @ moved.T) / temperature
        d_loss = (weights * d_logits).sum(1)
        if positives is not None:
            d_loss = d_loss - d_logits[torch.arange(len(anchors), device=z.device), positives]
    return d_loss


def _function_setup_context(ctx, inputs, output):
    _setup_context(ctx, inputs, output)
    ctx.save_for_forward(inputs[0])


class _NTXentRows(torch.autograd.Function):
    """``torch.ops.pyclr.nt_xent_forward`` as an autograd.Function with ``setup_context``, the
    form torch.func takes: torch's register_autograd gives its generated Function none, so
    torch.func.grad/jacrev/hessian fail on the bare op (pytorch#168393), and forward-mode AD
    drops the tangent without a word. Here they work (vmap through torch's per-sample
    fallback; forward mode in plain PyTorch, O(M^2)). The bare op keeps register_autograd's
    link (opcheck, direct calls); both use :func:`_backward`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(z, temperature, negatives, anchor_offset, anchor_count):
        return torch.ops.pyclr.nt_xent_forward(z, temperature, negatives, anchor_offset, anchor_count)

    setup_context = staticmethod(_function_setup_context)
    backward = staticmethod(_backward)

    @staticmethod
    def jvp(ctx, z_tangent, *_):
        z, = ctx.saved_tensors
        return _plain_jvp(z, z_tangent, *ctx.args), None


if _ops.EXTENSION_LOADED:
    torch.library.register_fake("pyclr::nt_xent_forward")(_forward_fake)
    torch.library.register_fake("pyclr::nt_xent_backward")(_backward_fake)
    torch.library.register_autograd("pyclr::nt_xent_forward", _backward, setup_context=_setup_context)

__all__ = ["nt_xent", "NTXentLoss", "NEGATIVES", "REDUCTIONS"]
