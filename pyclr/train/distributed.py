"""Distributed training under torchrun: the process group, DDP, and who logs."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as tdist
from torch import nn

from ..losses._gather import all_gather

_STARTED_HERE = False  # whether DistributedContext.from_environment initialised the process group


@dataclass
class DistributedContext:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> "DistributedContext":
        """The initialised process group, or the one torchrun describes (initialised here:
        NCCL with GPUs, gloo without), or a single process."""
        if not tdist.is_available():
            return cls()
        if not tdist.is_initialized():
            world = os.environ.get("WORLD_SIZE", "1").strip()
            if not re.fullmatch(r"[0-9]+", world):  # str.isdigit() takes '²', int() does not
                raise ValueError(f"WORLD_SIZE: expected the number of processes (an integer), got {world!r} "
                                 "from the environment")
            if int(world) <= 1:
                return cls()
            try:
                tdist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
            except ValueError as exc:  # a WORLD_SIZE left in the shell, not torchrun's
                detail = str(exc).rsplit(": ", 1)[-1]
                raise ValueError(f"WORLD_SIZE={world} in the environment asks for several processes, but "
                                 f"torch.distributed cannot join them ({detail}): start them with torchrun, "
                                 "or unset WORLD_SIZE") from exc
            global _STARTED_HERE
            _STARTED_HERE = True
        local = int(os.environ.get("LOCAL_RANK", tdist.get_rank()))
        if torch.cuda.is_available():
            torch.cuda.set_device(local % torch.cuda.device_count())
        return cls(tdist.get_world_size(), tdist.get_rank(), local)

    def default_device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")

    def wrap(self, net: nn.Module, device: torch.device) -> nn.Module:
        """DistributedDataParallel with global batch norm (SyncBatchNorm, as SimCLR) on GPUs."""
        if self.world_size == 1:
            return net
        if device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
            return nn.parallel.DistributedDataParallel(net, device_ids=[device.index])
        return nn.parallel.DistributedDataParallel(net)


def end_process_group() -> None:
    """Ends the process group that pyclr started under torchrun, once every rank is done with it
    (a collective: every rank calls it, after its last write). A group the caller initialised is
    the caller's to end.

    torch asks for destroy_process_group() before exit: a group left to interpreter shutdown keeps
    its gloo worker threads, and one that needs the GIL while Python finalizes aborts the process
    ("terminate called without an active exception": pytorch/pytorch#179291 and #190489).
    Before torch 2.8 destroy_process_group() itself can deadlock (the gloo destructor joined its
    workers holding the GIL; fixed by pytorch/pytorch#154976): there the group is left to the
    interpreter."""
    global _STARTED_HERE
    if not (_STARTED_HERE and tdist.is_available() and tdist.is_initialized()):
        return
    tdist.barrier()  # no rank tears down while another still needs a collective
    if torch.__version__ >= (2, 8):  # TorchVersion compares with tuples
        tdist.destroy_process_group()
        _STARTED_HERE = False


@torch.no_grad()
def all_gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    return all_gather(x)


def mean_over_ranks(value: float, device: torch.device) -> float:
    """The mean of a per-rank number over all ranks (a collective: every rank calls it)."""
    total = torch.tensor([value], dtype=torch.float64, device=device)
    tdist.all_reduce(total)
    return total.item() / tdist.get_world_size()
