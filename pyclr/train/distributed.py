"""Distributed training under torchrun: the process group, DDP, and who logs."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist
from torch import nn


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
            if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
                return cls()
            tdist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
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


@torch.no_grad()
def all_gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(x) for _ in range(tdist.get_world_size())]
    tdist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def mean_over_ranks(value: float, device: torch.device) -> float:
    """The mean of a per-rank number over all ranks (a collective: every rank calls it)."""
    total = torch.tensor([value], dtype=torch.float64, device=device)
    tdist.all_reduce(total)
    return total.item() / tdist.get_world_size()
