"""gather_distributed=True on 2 gloo processes equals one process on the concatenated batch."""
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.autograd import forward_ad

from pyclr.losses import nt_xent, reference

from ..conftest import exit_spawned_rank

WORLD = 2
N, D = 6, 5  # rows per rank and view


def full_batch():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(WORLD * N, D, generator=gen, dtype=torch.float64), torch.randn(
        WORLD * N, D, generator=gen, dtype=torch.float64
    )


def directions():
    gen = torch.Generator().manual_seed(1)
    return (torch.randn(WORLD * N, D, generator=gen, dtype=torch.float64),
            torch.randn(WORLD * N, D, generator=gen, dtype=torch.float64))


def run_rank(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    z1_all, z2_all = full_batch()
    results = {}
    for name, fn in (("fused", nt_xent), ("reference", reference.nt_xent)):
        for negatives in ("all", "cross"):
            z1 = z1_all[rank * N : (rank + 1) * N].clone().requires_grad_()
            z2 = z2_all[rank * N : (rank + 1) * N].clone().requires_grad_()
            loss = fn(z1, z2, temperature=0.3, negatives=negatives, gather_distributed=True)
            loss.backward()
            results[name, negatives] = (loss.detach(), z1.grad, z2.grad)
            # second order: the gradient's own graph crosses ranks (Hessian-vector product of
            # the sum of the ranks' losses along v), and forward mode (its tangent along v)
            v1, v2 = (v[rank * N: (rank + 1) * N] for v in directions())
            g1, g2 = torch.autograd.grad(fn(z1, z2, temperature=0.3, negatives=negatives, gather_distributed=True),
                                         (z1, z2), create_graph=True)
            results[name, negatives, "hvp"] = torch.autograd.grad((g1 * v1).sum() + (g2 * v2).sum(), (z1, z2))
            with forward_ad.dual_level():
                loss = fn(forward_ad.make_dual(z1.detach(), v1), forward_ad.make_dual(z2.detach(), v2),
                          temperature=0.3, negatives=negatives, gather_distributed=True)
                results[name, negatives, "jvp"] = forward_ad.unpack_dual(loss).tangent
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    exit_spawned_rank()  # an exception above ends the process with its traceback instead


@pytest.fixture(scope="module")
def ranks():
    """What each of the WORLD gloo processes computed (run_rank), spawned once for the module."""
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(run_rank, args=(os.path.join(tmp, "init"), tmp), nprocs=WORLD,
                           join=True, start_method="spawn")
        return [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=True) for r in range(WORLD)]


@pytest.mark.distributed
def test_gather_distributed_equals_single_process(ranks):
    z1_all, z2_all = full_batch()
    for key in ranks[0]:
        if len(key) == 3:
            continue
        name, negatives = key
        z1 = z1_all.clone().requires_grad_()
        z2 = z2_all.clone().requires_grad_()
        single = reference.nt_xent(z1, z2, temperature=0.3, negatives=negatives)
        single.backward()
        # each rank's mean over its own rows; DDP averages ranks, and so the losses
        mean_loss = sum(r[name, negatives][0] for r in ranks) / WORLD
        torch.testing.assert_close(mean_loss, single.detach(), msg=f"{name} {negatives} loss")
        for r, rank in enumerate(ranks):
            rows = slice(r * N, (r + 1) * N)
            # the gather's backward sums every rank's gradient; DDP then divides by WORLD
            torch.testing.assert_close(rank[name, negatives][1] / WORLD, z1.grad[rows])
            torch.testing.assert_close(rank[name, negatives][2] / WORLD, z2.grad[rows])


@pytest.mark.distributed
def test_gather_distributed_second_order_and_forward_mode_equal_single_process(ranks):
    # the gather's backward was not differentiable across ranks: with create_graph=True a
    # rank's Hessian-vector product missed the other ranks' terms (silently), and forward
    # mode through the gather failed
    z1_all, z2_all = full_batch()
    v1, v2 = directions()
    for name in ("fused", "reference"):
        for negatives in ("all", "cross"):
            # the ranks' losses sum to WORLD x the single-process mean: so do their derivatives
            def total(z1, z2):
                return WORLD * reference.nt_xent(z1, z2, temperature=0.3, negatives=negatives)

            _, hvp = torch.autograd.functional.hvp(total, (z1_all, z2_all), (v1, v2))
            _, jvp = torch.autograd.functional.jvp(total, (z1_all, z2_all), (v1, v2))
            for r, rank in enumerate(ranks):
                rows = slice(r * N, (r + 1) * N)
                torch.testing.assert_close(rank[name, negatives, "hvp"][0], hvp[0][rows], msg=f"{name} {negatives}")
                torch.testing.assert_close(rank[name, negatives, "hvp"][1], hvp[1][rows], msg=f"{name} {negatives}")
            torch.testing.assert_close(sum(rank[name, negatives, "jvp"] for rank in ranks), jvp,
                                       msg=f"{name} {negatives} jvp")
