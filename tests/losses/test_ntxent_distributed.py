"""gather_distributed=True on 2 gloo processes equals one process on the concatenated batch."""
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pyclr.losses import nt_xent, reference

from ..conftest import exit_spawned_rank

WORLD = 2
N, D = 6, 5  # rows per rank and view


def full_batch():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(WORLD * N, D, generator=gen, dtype=torch.float64), torch.randn(
        WORLD * N, D, generator=gen, dtype=torch.float64
    )


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
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    exit_spawned_rank()  # an exception above ends the process with its traceback instead


@pytest.mark.distributed
def test_gather_distributed_equals_single_process():
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(run_rank, args=(os.path.join(tmp, "init"), tmp), nprocs=WORLD,
                           join=True, start_method="spawn")
        ranks = [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=True) for r in range(WORLD)]
    z1_all, z2_all = full_batch()
    for (name, negatives) in ranks[0]:
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
