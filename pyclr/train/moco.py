"""MoCo (He et al. 2020): a momentum copy of the encoder and head gives the keys, and a queue
of past keys gives the negatives, so the negatives do not depend on the batch size."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_int, check_real, is_int
from ..losses._checks import check_temperature
from ..losses.priors import normalize_rows


def check_moco_momentum(value) -> float:
    """The key encoder's momentum, in [0, 1): at 1 it would never learn."""
    value = check_real("moco_momentum", value, 0, None)
    if value >= 1:
        raise ValueError(f"moco_momentum: expected a number in [0, 1), got {value}")
    return value


class MoCo(nn.Module):
    """The momentum network and the queue; its state dict (momentum weights, queue, pointer)
    goes into checkpoints.

    ``loss(q1, q2, x1, x2)`` takes the online projections of both views and the two views'
    images, computes the keys with the momentum network, and returns the symmetric InfoNCE
    loss: each query's positive is the other view's key, its negatives the queue.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module, queue_size: int = 4096,
                 momentum: float = 0.99, temperature: float = 0.2):
        super().__init__()
        queue_size = check_int("queue_size", queue_size, 1)
        momentum = check_moco_momentum(momentum)
        temperature = check_temperature(temperature)
        self.key_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.key_head = copy.deepcopy(head).requires_grad_(False)
        dim = self._out_dim(head, encoder)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, dim), dim=1))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.momentum, self.temperature = momentum, temperature

    @staticmethod
    def _out_dim(head, encoder) -> int:
        """The queue's width: the head's output size (its ``out_dim``, or ``out_features`` for
        an ``nn.Linear``); the encoder's ``feature_dim`` only when the head is the identity.
        (Falling back to the encoder's size for any head made a queue of the wrong width.)"""
        if isinstance(head, nn.Identity):
            dim, where = getattr(encoder, "feature_dim", None), "encoder.feature_dim"
        else:
            dim = getattr(head, "out_dim", None) or getattr(head, "out_features", None)
            where = "head.out_dim"
        if not is_int(dim) or dim < 1:
            raise ValueError(f"head: MoCo needs the projection size for its queue ({where}: an int "
                             f"attribute of the {type(head).__name__}), got {dim!r}")
        return int(dim)

    @torch.no_grad()
    def update(self, encoder: nn.Module, head: nn.Module) -> None:
        """key <- m * key + (1 - m) * online, parameters and buffers (batch-norm statistics)."""
        for online, key in ((encoder, self.key_encoder), (head, self.key_head)):
            for p_key, p in zip(key.parameters(), online.parameters()):
                p_key.mul_(self.momentum).add_(p.detach(), alpha=1 - self.momentum)
            for b_key, b in zip(key.buffers(), online.buffers()):
                b_key.copy_(b)

    @torch.no_grad()
    def keys(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_rows(self.key_head(self.key_encoder(x)).float())

    def loss(self, q1, q2, x1, x2, gather=None) -> torch.Tensor:
        k1, k2 = self.keys(x1), self.keys(x2)
        queue = self.queue.clone()  # autograd keeps it for q's gradient; _enqueue writes the buffer
        loss = 0.5 * (self._info_nce(q1, k2, queue) + self._info_nce(q2, k1, queue))
        self._enqueue(torch.cat([k1, k2]) if gather is None else gather(torch.cat([k1, k2])))
        return loss

    def _info_nce(self, q, k, queue):
        q = normalize_rows(q.float())
        positive = (q * k).sum(1, keepdim=True)
        negative = q @ queue.T
        logits = torch.cat([positive, negative], dim=1) / self.temperature
        return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        size = self.queue.shape[0]
        keys = keys[-size:]
        index = (self.pointer + torch.arange(len(keys), device=keys.device)) % size
        self.queue[index] = keys.to(self.queue.dtype)
        self.pointer.copy_((self.pointer + len(keys)) % size)
