"""Optimisers and the learning-rate schedule of SimCLR: LARS, batch-size-scaled rates, linear
warm-up then cosine decay."""
from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import check_choice, check_int, check_nonnegative, check_real

OPTIMIZERS = ("lars", "sgd", "adam")


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al. 2017), as SimCLR
    uses it: for each parameter tensor ``p`` with gradient ``g``,

        g <- g + weight_decay * p;   g <- trust * g,  trust = eta * |p| / |g|  (1 if either is 0)
        v <- momentum * v + g;       p <- p - lr * v

    Parameter groups with ``exclude=True`` (biases and normalisation parameters, see
    :func:`param_groups`) get neither weight decay nor the trust ratio: plain momentum SGD.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 1e-6,
                 eta: float = 1e-3):
        lr, weight_decay, eta = (check_nonnegative(name, value) for name, value in
                                 (("lr", lr), ("weight_decay", weight_decay), ("eta", eta)))
        momentum = check_real("momentum", momentum, 0, 1)
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, exclude=False)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if not group["exclude"]:
                    g = g.add(p, alpha=group["weight_decay"])
                    p_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    trust = torch.where((p_norm > 0) & (g_norm > 0), group["eta"] * p_norm / g_norm,
                                        torch.ones_like(p_norm))
                    g = g.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(g)
                p.add_(buf, alpha=-group["lr"])
        return loss


def param_groups(modules, weight_decay: float) -> list:
    """Two groups: weights (decayed, adapted) and 1-D tensors (biases, normalisation scales and
    shifts: excluded from weight decay and from LARS adaptation, as in SimCLR). ``modules``:
    a module or a sequence of them."""
    weight_decay = check_nonnegative("weight_decay", weight_decay)
    modules = [modules] if isinstance(modules, nn.Module) else modules
    if not isinstance(modules, (list, tuple)) or not all(isinstance(m, nn.Module) for m in modules):
        raise TypeError(f"modules: expected a module or a list of modules, got {type(modules).__name__}")
    decay, exclude = [], []
    for module in modules:
        for p in module.parameters():
            if p.requires_grad:
                (exclude if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "exclude": False},
            {"params": exclude, "weight_decay": 0.0, "exclude": True}]


def default_lr(optimizer: str, batch_size: int) -> float:
    """SimCLR's rates: 0.3 x B/256 for LARS (the [Re] paper's choice), 0.06 x B/256 for SGD;
    1e-3 for Adam, which does not scale with the batch."""
    check_choice("optimizer", optimizer, OPTIMIZERS)
    batch_size = check_int("batch_size", batch_size, 1)
    return {"lars": 0.3 * batch_size / 256, "sgd": 0.06 * batch_size / 256, "adam": 1e-3}[optimizer]


def make_optimizer(name: str, modules, lr: float, weight_decay: float, momentum: float = 0.9):
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {', '.join(map(repr, OPTIMIZERS))}, got {name!r}")
    groups = param_groups(modules, weight_decay)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    for g in groups:
        g.pop("exclude")
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    return torch.optim.AdamW(groups, lr=lr)


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """The multiplier of the base rate at ``step``: linear from 1/warmup to 1 over the warm-up,
    then a cosine to 0 at ``total_steps``."""
    total_steps = check_int("total_steps", total_steps, 1)
    step = check_int("step", step, 0)
    warmup_steps = check_int("warmup_steps", warmup_steps, 0)
    return lr_multiplier("cosine", step, total_steps, warmup_steps)


SCHEDULES = ("cosine", "constant")


def lr_multiplier(schedule: str, step: int, total_steps: int, warmup_steps: int) -> float:
    """The multiplier of the base rate at ``step``: the linear warm-up, then a cosine to 0
    (``"cosine"``) or the base rate to the end (``"constant"``: Hermann et al.'s Adam). The
    training loops call it every step with their own, already checked, counts."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
