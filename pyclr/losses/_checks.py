"""Validation of user-facing loss arguments: a bad input raises before any kernel runs."""
from __future__ import annotations

import math

import torch

from .._checks import check_positive

KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


# The temperatures the losses take, the range in which every fused kernel is tested against
# float64 at both ends (tests/losses/test_ntxent.py, the CUDA code in the emulator too); the
# papers use 0.01 to 1. Logits scale as 1/tau: at tau = 1e-4 the CUDA kernel's fp32 (3xTF32)
# gradients were 5x less accurate than torch's fp32, and at 1e-10 the CPU kernel gave NaN.
TEMPERATURE_RANGE = (1e-3, 1e6)  # csrc/ntxent/ntxent.h checks the same range at the op boundary


def check_temperature(value) -> float:
    """``temperature`` as a float, a number in TEMPERATURE_RANGE."""
    value = check_positive("temperature", value)
    low, high = TEMPERATURE_RANGE
    if not low <= value <= high:
        raise ValueError(f"temperature: expected a number in [{low:g}, {high:g}], got {value}")
    return value


def check_kernel_dtype(name: str, x: torch.Tensor) -> None:
    """The dtypes the kernels take: float32, bfloat16, float16, and float64 on the CPU."""
    allowed = KERNEL_DTYPES + ((torch.float64,) if x.device.type == "cpu" else ())
    if x.dtype not in allowed:
        names = ", ".join(str(t).removeprefix("torch.") for t in KERNEL_DTYPES)
        raise TypeError(f"{name}: expected dtype {names} (or float64 on the CPU), got {x.dtype}")


def check_dense(name: str, x: torch.Tensor) -> None:
    """A strided tensor: sparse layouts reach no kernel (torch's own errors name no argument)."""
    if x.layout != torch.strided:
        raise TypeError(f"{name}: expected a dense tensor, got layout {x.layout} (call .to_dense())")


def check_views(z1, z2, kernel: bool) -> None:
    """Two (N, d) views of the same batch. ``kernel``: restrict dtypes to what kernels take."""
    for name, z in (("z1", z1), ("z2", z2)):
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(z).__name__}")
        check_dense(name, z)
        if z.dim() != 2:
            raise ValueError(f"{name}: expected a 2-D tensor of shape (batch, dim), got shape {tuple(z.shape)}")
        if z.shape[0] == 0 or z.shape[1] == 0:
            raise ValueError(f"{name}: expected a non-empty batch, got shape {tuple(z.shape)}")
        if kernel:
            check_kernel_dtype(name, z)
        elif not z.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got {z.dtype}")
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2: expected the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.dtype != z2.dtype:
        raise TypeError(f"z1 and z2: expected the same dtype, got {z1.dtype} and {z2.dtype}")
    if z1.device != z2.device:
        raise ValueError(f"z1 and z2: expected the same device, got {z1.device} and {z2.device}")


def check_logit_range(z: torch.Tensor, temperature: float) -> None:
    """``normalize=False``: the logits ``z_i . z_k / tau`` of the stacked views ``z`` (M rows),
    and the loss's sums of M of them, must stay finite in the kernels' accumulator (float32;
    float64 for float64 inputs), or finite inputs give a NaN loss (inf - inf). Bounds the
    logits by Cauchy-Schwarz: ``max ||z_i||^2 / tau <= max / (4 M)``. Reads a value back from
    the device."""
    acc = torch.float64 if z.dtype == torch.float64 else torch.float32
    norm = torch.linalg.vector_norm(z.detach(), dim=1, dtype=torch.float64).max().item()
    if not math.isfinite(norm):
        raise ValueError(f"z1, z2: expected finite values, got a row of norm {norm}")
    bound, limit = norm * norm / temperature, torch.finfo(acc).max / (4 * len(z))
    if not bound <= limit:
        raise ValueError(f"z1, z2: with normalize=False the logits z_i . z_k / temperature reach up to "
                         f"{bound:.3g} (largest row norm {norm:.3g}), beyond the {limit:.3g} that the "
                         f"{str(acc).removeprefix('torch.')} accumulator sums over {len(z)} rows: scale the "
                         f"embeddings down or use normalize=True")
