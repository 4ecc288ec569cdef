"""All-gather with a gradient: negatives from every rank for ``gather_distributed=True``."""
from __future__ import annotations

import torch
import torch.distributed as dist


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_gather(x: torch.Tensor) -> torch.Tensor:
    """cat of every rank's ``x`` (a collective; no gradient: see _AllGather for one)."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


class _AllGather(torch.autograd.Function):
    """cat of every rank's tensor; the backward sums the gradients of all ranks and returns
    this rank's slice, so that with DDP's gradient averaging the result equals the
    single-process gradient on the concatenated batch. The backward is itself a Function
    (_ReduceScatter, whose backward gathers again): with ``create_graph=True`` the gradient
    of the gradient crosses ranks too, so Hessian-vector products and gradient penalties of a
    gathered loss equal the single-process ones."""

    @staticmethod
    def forward(ctx, x):
        return all_gather(x)

    @staticmethod
    def backward(ctx, grad):
        return _ReduceScatter.apply(grad)

    @staticmethod
    def jvp(ctx, tangent):  # forward mode: the tangents are gathered as the values are
        return all_gather(tangent)


class _ReduceScatter(torch.autograd.Function):
    """The adjoint of _AllGather: the sum over ranks, this rank's slice of it."""

    @staticmethod
    def forward(ctx, grad):
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        n = total.shape[0] // dist.get_world_size()
        rank = dist.get_rank()
        return total[rank * n: (rank + 1) * n]

    @staticmethod
    def backward(ctx, grad):
        return _AllGather.apply(grad)


def gather_views(z1: torch.Tensor, z2: torch.Tensor):
    """Returns (z1 of all ranks, z2 of all ranks, this rank's row offset in them).

    Without an initialised process group of more than one rank this is the identity, so a
    loss with ``gather_distributed=True`` also runs in a single process.
    """
    if not _active():
        return z1, z2, 0
    # Mismatched shapes would make all_gather hang or fail obscurely: compare them first.
    shape = torch.tensor(z1.shape, device=z1.device)
    shapes = [torch.empty_like(shape) for _ in range(dist.get_world_size())]
    dist.all_gather(shapes, shape)
    sizes = [tuple(s.tolist()) for s in shapes]
    if len(set(sizes)) != 1:
        raise ValueError(
            f"gather_distributed: every rank must pass views of the same shape, got {sizes}"
        )
    return _AllGather.apply(z1), _AllGather.apply(z2), dist.get_rank() * z1.shape[0]
